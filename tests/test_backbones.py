import pytest
import torch

from tledge.card import ModelCard
from tledge.errors import TledgeError, UnknownBackbone
from tledge.models.backbones import create_model, list_backbones, model_from_card

EXPECTED_STAGES = {"mobilenet_v2": 19, "resnet18": 5, "vgg16": 5, "alexnet": 5, "efficientnet_b0": 9,
                   "mobilenet_v3_small": 13}


def test_registry_lists_the_issue_architectures():
    assert set(list_backbones()) >= {"mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "resnet18",
                                     "resnet50", "vgg16", "alexnet", "efficientnet_b0"}


@pytest.mark.parametrize("arch", ["mobilenet_v2", "resnet18", "alexnet", "mobilenet_v3_small"])
@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_models_give_logits_for_the_right_class_count(arch, head):
    kwargs = {"width_mult": 0.25} if arch == "mobilenet_v2" else {}
    model = create_model(arch, 5, head=head, **kwargs).eval()
    assert len(model.features) == EXPECTED_STAGES[arch]
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 5)
    if head == "mlp":  # the studies' head: pooling → 512 → ReLU → dropout 0.5 → classes
        layers = list(model.head)
        assert layers[0].out_features == 512 and layers[2].p == 0.5 and layers[3].out_features == 5


def test_vgg_linear_head_keeps_pretrained_fc_layers():
    model = create_model("vgg16", 4)
    assert [m.out_features for m in model.pre_logits if isinstance(m, torch.nn.Linear)] == [4096, 4096]
    assert model.head[-1].in_features == 4096 and model.head[-1].out_features == 4
    assert len(model.features) == 5


def test_unknown_backbone_suggests_close_names():
    with pytest.raises(UnknownBackbone, match="did you mean resnet18"):
        create_model("resnet19", 3)
    with pytest.raises(TledgeError, match="unknown head"):
        create_model("resnet18", 3, head="attention")


def test_weights_from_state_dict_file_fill_the_trunk(tmp_path):
    import torchvision

    torch.manual_seed(1)
    source = torchvision.models.resnet18(num_classes=1000)
    torch.save(source.state_dict(), tmp_path / "resnet18.pth")
    model = create_model("resnet18", 3, weights=str(tmp_path / "resnet18.pth"))
    torch.testing.assert_close(model.features[0][0].weight, source.conv1.weight)
    torch.testing.assert_close(model.features[4][1].conv2.weight, source.layer4[1].conv2.weight)
    assert model.head[-1].out_features == 3  # fresh head, not the ImageNet classifier


def test_weights_from_tledge_checkpoint(tmp_path):
    from tledge.checkpoint import save_checkpoint

    card = ModelCard(arch="mobilenet_v2", class_names=["a", "b"], arch_kwargs={"width_mult": 0.25})
    first = model_from_card(card)
    save_checkpoint(tmp_path / "best.pt", {"card": card.to_dict(), "model": first.state_dict()})
    second = create_model("mobilenet_v2", 2, weights=str(tmp_path / "best.pt"), width_mult=0.25)
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_weights_for_another_architecture_are_refused(tmp_path):
    import torchvision

    torch.save(torchvision.models.alexnet().state_dict(), tmp_path / "alexnet.pth")
    with pytest.raises(TledgeError, match="none of its tensors fit"):
        create_model("resnet18", 3, weights=str(tmp_path / "alexnet.pth"))

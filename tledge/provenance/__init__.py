"""What an artifact was checked on and where: the parity pack written beside every export, the environment a
verdict was obtained in, and the verdict files next to the artifacts. Read by the runtime (it warns when a file
was never verified on a machine that computes like this one) and written by verification, so it sits below both.
No torch."""

"""Deployment to the ZCU104 over ssh: the toolchain's board commands.

    transport.py   ssh/scp command lines, running them, ssh's faults as one line each
    bundle.py      what `make compile` left, and the folder that is copied to the board
    commands.py    deploy, board-run, board-bench, board-eval-photos (and the ladder's board rung)

NOT YET RUN ON A REAL BOARD: written against the documented interface of the Vitis AI 3.0
ZCU104 image (apps under /home/root, `xdputil query` prints JSON with the DPU fingerprint,
files go over `scp -r`, no sftp-server) and tested with a fake ssh/scp on PATH and real
`xdputil query` output (tests/fixtures/board/).
"""

"""Running stages: the runner (logging, one-line errors, exit codes), path-level entry points of
the stages (pipeline) and the environment report (doctor).

May import: anything in the package except unet.cli.
"""

# SLURM site settings: refuse to start a run whose profile still holds a placeholder, and let
# only the training act on the pre-walltime SIGUSR1.
#
# Nothing else is required (unet.cluster.site): the SLURM plugin guesses the account, and a job
# without slurm_partition goes where --slurm-partition-config or the cluster's default puts it.
# The check keys on the resources in effect (Snakemake 9 parses the Snakefile before it hands
# over the executor) and names the profile file that set the placeholder, for the profiles
# this run uses. It runs in the main process only, at parse time, so
# `snakemake -n --profile profiles/slurm` fails the same way as a real run, before anything is
# submitted.

import signal

from snakemake.exceptions import WorkflowError
from snakemake_interface_executor_plugins.settings import ExecMode

from unet.cluster.site import site_problems

if workflow.exec_mode == ExecMode.DEFAULT:
    _problems = site_problems(
        workflow.resource_settings.default_resources,
        workflow.resource_settings.overwrite_resources,
    )
    if _problems:
        raise WorkflowError(
            "\n".join(_problems)
            + "\nReplace each placeholder in the site settings block of that profile (see "
            "docs/cluster.md), then run again. Nothing was submitted."
        )

# Inside a SLURM job (the jobstep processes run in REMOTE mode): the profile's
# `--signal=USR1@300` for train signals every process of the job step, and
# SIGUSR1 kills by default. Snakemake's own processes ignore it, and the
# training inherits SIG_IGN until it installs its handler, so the job step
# stays alive while the training saves its state.
if workflow.exec_mode == ExecMode.REMOTE:
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)

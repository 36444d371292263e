# SLURM site settings: refuse to start a run whose settings are missing or still
# placeholders, and let only the training act on the pre-walltime SIGUSR1.
#
# Snakemake 9 parses the Snakefile before it hands the executor to the
# workflow (workflow.executor_plugin is None here, and during --dry-run it is
# the dry-run executor), so the check keys on the site settings themselves: a
# run whose resources name any slurm_* setting (profiles/slurm does) must have
# all of them, with real values. It runs in the main process only, at parse
# time, so `snakemake -n --profile profiles/slurm` fails the same way as a real
# run, before anything is submitted.

import signal

from snakemake.exceptions import WorkflowError
from snakemake_interface_executor_plugins.settings import ExecMode

SITE_PROFILE = "profiles/slurm/config.yaml"
SITE_PLACEHOLDER = "EDIT_ME"
SITE_DEFAULTS = ("slurm_account", "slurm_partition")
SITE_GPU_RULES = ("train", "predict", "doctor")  # each needs its GPU partition


def site_problems(default_resources, set_resources):
    """One message per SLURM site setting that is missing or still a placeholder.

    `default_resources` maps resource name -> snakemake Resource (or is None),
    `set_resources` maps a rule's name to such a mapping. Empty when the run uses
    no slurm_* setting at all (a local run).
    """
    scopes = {"default-resources": default_resources or {}}
    for name in sorted(set_resources):
        scopes[f"set-resources: {name}"] = set_resources[name]
    if not any(key.startswith("slurm_") for res in scopes.values() for key in res):
        return []
    required = [("default-resources", key) for key in SITE_DEFAULTS]
    required += [
        (f"set-resources: {name}", "slurm_partition") for name in SITE_GPU_RULES
    ]
    problems = [
        f"{SITE_PROFILE}: site setting '{key}' under '{scope}' is missing"
        for scope, key in required
        if key not in scopes.get(scope, {})
    ]
    for scope, resources in scopes.items():
        for key, resource in resources.items():
            value = str(resource.raw).strip("'\" ")
            if SITE_PLACEHOLDER in value:
                problems.append(
                    f"{SITE_PROFILE}: site setting '{key}' under '{scope}' is still "
                    f"the placeholder {value!r}"
                )
    return problems


if workflow.exec_mode == ExecMode.DEFAULT:
    _problems = site_problems(
        workflow.resource_settings.default_resources,
        workflow.resource_settings.overwrite_resources,
    )
    if _problems:
        raise WorkflowError(
            "\n".join(_problems)
            + "\nEdit the site settings block at the top of the profile "
            "(see docs/cluster.md), then run again. Nothing was submitted."
        )

# Inside a SLURM job (the jobstep processes run in REMOTE mode): the profile's
# `--signal=USR1@300` for train signals every process of the job step, and
# SIGUSR1 kills by default. Snakemake's own processes ignore it, and the
# training inherits SIG_IGN until it installs its handler, so the job step
# stays alive while the training saves its state.
if workflow.exec_mode == ExecMode.REMOTE:
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)

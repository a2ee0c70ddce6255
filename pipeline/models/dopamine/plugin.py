"""The dopamine code's entry: the `distributional_td` kind, its `dopamine_code` task and the two
reward tasks as datasets."""

from pipeline.models.dopamine import DistributionalTDSpec, DopamineCodeSpec, ValuePopulations
from pipeline.models.dopamine.trials import REWARD_MAGNITUDES, REWARD_PROBABILITIES
from pipeline.plugins import ModelEntry, Plugin, TaskEntry


def _code(data: str) -> list[dict]:
    return [{"kind": "dopamine_code"}]


PLUGIN = Plugin(
    name="dopamine",
    summary="The dopamine population code (Dabney et al. 2020): distributional TD value units against the "
            "classical-TD null",
    models={
        "distributional_td": ModelEntry(
            spec=DistributionalTDSpec,
            module="pipeline.models.dopamine.module:DistributionalTD",
            summary="a population of TD value units each with its own rates for positive and negative errors "
                    "(expectiles of the reward distribution), beside the classical null (one asymmetry + noise)",
            modalities=("vector",),
            provides=(ValuePopulations,),
            single_process=True,
            cpu_only=True,
            default_tasks=_code,
        ),
    },
    tasks={
        "dopamine_code": TaskEntry(
            DopamineCodeSpec, "pipeline.models.dopamine.task", (ValuePopulations,),
            "reversal points and their reliability, asymmetry against reversal point, the reward distribution "
            "decoded by expectile imputation; optimistic and pessimistic cue coding; each against the classical null",
            data="any"),
    },
    datasets=(REWARD_MAGNITUDES, REWARD_PROBABILITIES),
)

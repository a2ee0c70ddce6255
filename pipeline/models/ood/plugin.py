"""Out of distribution's entry: the `ood_cnn` kind (a small CNN with the methods), the
`calibration` and `ood_detection` tasks for any classifier, and the OOD datasets."""

from __future__ import annotations

from pipeline.capabilities import Classifier, Encoder
from pipeline.models.ood import CalibrationSpec, LengthGeneralizationSpec, OODDetectionSpec, OODNetSpec
from pipeline.models.ood.datasets import DATASETS
from pipeline.plugins import ModelEntry, Plugin, TaskEntry


def _default_tasks(data: str) -> list[dict]:
    return [{"kind": "network"}, {"kind": "calibration"}, {"kind": "ood_detection"}]


PLUGIN = Plugin(
    name="ood",
    summary="Out of distribution: calibration, OOD detection and length generalisation for any classifier; a small "
            "CNN with deep ensembles, MC dropout, last-layer Laplace and energy fine-tuning with outlier exposure",
    models={
        "ood_cnn": ModelEntry(
            spec=OODNetSpec, module="pipeline.models.ood.module:OODNet",
            summary="small CNN classifier: one network or a deep ensemble (Lakshminarayanan et al. 2017), MC dropout "
                    "(Gal & Ghahramani 2016), last-layer Laplace (Daxberger et al. 2021), energy fine-tuning with "
                    "outlier exposure (Liu et al. 2020)",
            modalities=("image",), provides=(Encoder, Classifier), single_process=True,
            default_tasks=_default_tasks),
    },
    tasks={
        "calibration": TaskEntry(CalibrationSpec, "pipeline.models.ood.calibration", (Classifier,),
                                 "ECE, NLL, Brier and a reliability diagram of the classifier's predictive "
                                 "distribution, against temperature scaling fitted on validation"),
        "ood_detection": TaskEntry(OODDetectionSpec, "pipeline.models.ood.ood_detection", (Classifier,),
                                   "AUROC, AUPR and FPR95 of max softmax, max logit, energy and the method's own "
                                   "score, in-distribution test split against each OOD family"),
        "length_generalization": TaskEntry(LengthGeneralizationSpec, "pipeline.models.ood.length_generalization",
                                           (Classifier,), "a sequence classifier's accuracy on its data at longer "
                                                          "lengths than it trained at"),
    },
    datasets=DATASETS,
    report="pipeline.models.ood.report:sections",
)

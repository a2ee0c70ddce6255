"""The stages of a spec's chain: fetch -> pretrain (train) -> evaluate -> report. Each reads the
files the earlier stage wrote (the files DVC tracks), writes its own under artifacts/<name>/ and
metrics/<name>/, and logs one MLflow run. `dvc` writes dvc.yaml from the specs."""

from pipeline.stages.common import build_model
from pipeline.stages.evaluate import evaluate
from pipeline.stages.fetch import fetch
from pipeline.stages.report import report
from pipeline.stages.train import build_trainer, pretrain

__all__ = ["build_model", "build_trainer", "evaluate", "fetch", "pretrain", "report"]

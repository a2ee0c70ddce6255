"""The standard downstream tasks as one plugin: what any family's model can feed (an encoder's
features, a classifier's predictions, a forecaster's series, a video predictor's frames)."""

from __future__ import annotations

from pipeline.capabilities import Classifier, Encoder, Forecaster, NetworkStats, VideoPredictor
from pipeline.evaluators import specs
from pipeline.plugins import Plugin, TaskEntry

_HERE = "pipeline.evaluators"

PLUGIN = Plugin(
    name="standard_tasks",
    summary="Downstream tasks for any model: linear probe, kNN, t-SNE, fine-tuning with few labels, the network's "
            "own accuracy, noise robustness, activation sparsity, network statistics, forecasting, video prediction, "
            "object probes, feature export",
    tasks={
        "linear_probe": TaskEntry(specs.LinearProbeSpec, f"{_HERE}.linear_probe", (Encoder,),
                                  "logistic regression on frozen features, against raw input and untrained",
                                  default=10, reads_features=True),
        "knn": TaskEntry(specs.KnnSpec, f"{_HERE}.knn", (Encoder,),
                         "cosine kNN vote on frozen features, against raw input and untrained",
                         default=20, reads_features=True),
        "embedding": TaskEntry(specs.EmbeddingSpec, f"{_HERE}.embedding", (Encoder,),
                               "t-SNE picture of the test features", default=120, reads_features=True),
        "network": TaskEntry(specs.NetworkSpec, f"{_HERE}.network", (Classifier,),
                             "the trained network's own test accuracy and confusion matrix", default=30),
        "finetune": TaskEntry(specs.FinetuneSpec, f"{_HERE}.finetune", (Encoder,),
                              "fine-tuning with few labels, against the same network from scratch"),
        "export_features": TaskEntry(specs.ExportFeaturesSpec, f"{_HERE}.export_features", (Encoder,),
                                     "writes the encoder's features as a dataset other specs train on",
                                     writes="vector"),
        "network_stats": TaskEntry(specs.NetworkStatsSpec, f"{_HERE}.network_stats", (NetworkStats,),
                                   "parameters, synapses used vs dense, time constants, solver steps, inference time",
                                   data="any", default=110),
        "activation_sparsity": TaskEntry(specs.ActivationSparsitySpec, f"{_HERE}.activation_sparsity", (Encoder,),
                                         "population and lifetime sparsity of the encoder's activity, against the "
                                         "same encoder untrained", data="any", reads_features=True),
        "noise_robustness": TaskEntry(specs.NoiseRobustnessSpec, f"{_HERE}.noise_robustness", (Classifier,),
                                      "the network's accuracy as input noise grows"),
        "forecast": TaskEntry(specs.ForecastSpec, f"{_HERE}.forecast", (Forecaster,),
                              "one-step and free-running NRMSE against persistence and lagged ridge",
                              data="series", default=50),
        "next_frame": TaskEntry(specs.NextFrameSpec, f"{_HERE}.next_frame", (VideoPredictor,),
                                "next-frame MSE, PSNR, SSIM against copying the last frame", data="video", default=60),
        "extrapolation": TaskEntry(specs.ExtrapolationSpec, f"{_HERE}.extrapolation", (VideoPredictor,),
                                   "frames predicted from the model's own predictions, against the last true frame",
                                   data="video", default=70),
        "object_probe": TaskEntry(specs.ObjectProbeSpec, f"{_HERE}.object_probe", (Encoder,),
                                  "multi-label probe and kNN of a video's object classes, against raw frames and "
                                  "untrained", data="video", default=80),
    },
)

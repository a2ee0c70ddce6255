"""One spec over several seeds: `pipeline run SPEC --seeds 0,1,2` (and DVC's `seeds@<spec>` for a
spec that lists `seeds:`). Each seed is the spec with that seed; the spec's own seed keeps the
spec's name (its outputs are the ones `pipeline run SPEC` and DVC's stages write), every other seed
s is named `<name>-seed<s>`, in the same MLflow experiment. A seed whose training and evaluation
are current (same configuration, code and upstream runs) is kept, so an interrupted sweep
continues where it stopped. With `--jobs N`, N seeds train at once, each in a process of its own
(one GPU or a many-core machine is shared; each process gets its share of torch's threads).
`metrics/<name>/seeds.json` holds each seed's runs and, per downstream
task, the mean and spread of its headline figure, its validation figure and its baselines."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline import paths
from pipeline.aggregate import summarise_evaluations
from pipeline.distributed import is_secondary
from pipeline.errors import PipelineError
from pipeline.formatting import spread
from pipeline.spec.experiment import ExperimentSpec, spec_hash
from pipeline.stages.common import log, setup_logging, write_json


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2]; one clear message for anything else."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        seeds = []
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise PipelineError(f"--seeds takes distinct non-negative integers separated by commas, e.g. --seeds 0,1,2 "
                            f"(got {text!r})")
    return seeds


def variant(spec: ExperimentSpec, seed: int) -> ExperimentSpec:
    """The spec with another seed: named `<name>-seed<seed>` (its own outputs), logged to the same
    MLflow experiment as the spec. The spec's own seed is the spec itself."""
    if seed == spec.seed:
        return spec
    tracking = spec.tracking.model_copy(update={"experiment": spec.tracking.experiment or spec.name,
                                                "register_as": None})
    return spec.model_copy(update={"name": f"{spec.name}-seed{seed}", "seed": seed, "seeds": [],
                                   "tracking": tracking})


def evaluation_is_current(spec: ExperimentSpec, spec_path: Path | None) -> dict | None:
    """The spec's evaluate.json when it was computed from this configuration, by this code, on the
    current training (or upstream encoder) and upstream runs; else None."""
    from pipeline.stages.evaluate import evaluate_code
    from pipeline.upstream import encoder_source, lineage

    path = paths.metrics_dir(spec.name) / "evaluate.json"
    try:
        evaluated = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    folder = spec_path.parent if spec_path else None
    try:
        source = encoder_source(spec, folder)
        upstream = {role: f.run_id for role, f in lineage(spec, folder).items()}
    except PipelineError:
        return None
    recorded = {role: entry["run_id"] for role, entry in evaluated.get("upstream", {}).items() if role != "training"}
    if (evaluated.get("spec_hash") != spec_hash(spec) or evaluated.get("code") != evaluate_code(source.spec.model.kind)
            or evaluated.get("pretrain_run_id") != source.run_id or recorded != upstream):
        return None
    return evaluated


def parse_jobs(jobs: int, seeds: list[int]) -> int:
    """How many seeds run at once: at least 1, at most one per seed."""
    if jobs < 1:
        raise PipelineError(f"--jobs takes a positive number of processes, e.g. --jobs 3 (got {jobs})")
    return min(jobs, len(seeds))


def run_one_seed(spec: ExperimentSpec, spec_path: Path | None, seed: int, index: int, total: int,
                 threads: int | None = None) -> dict:
    """Train (where the spec trains a model) and evaluate one seed's variant, keeping what is
    current; its evaluate.json. `threads`: torch's intra-op threads for a worker process."""
    setup_logging()
    from pipeline import stages

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    run = variant(spec, seed)
    log.info("seeds %s: seed %d (%d of %d) as %s", spec.name, seed, index, total, run.name)
    if run.model is not None:
        stages.pretrain(run, spec_path, auto_resume=True)
    if is_secondary():  # a DDP process Lightning started trains its share; evaluate is rank 0's
        return {}
    evaluated = evaluation_is_current(run, spec_path)
    if evaluated is not None:
        log.info("seeds %s: the evaluation of %s is current (run %s): kept", spec.name, run.name, evaluated["run_id"])
        return evaluated
    return stages.evaluate(run, spec_path)


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them (indices or UUIDs)."""
    import os

    if (listed := os.environ.get("CUDA_VISIBLE_DEVICES")) is not None:
        return [gpu.strip() for gpu in listed.split(",") if gpu.strip() and gpu.strip() != "-1"]
    import torch

    return [str(index) for index in range(torch.cuda.device_count())]


def _pin_gpu(slots) -> None:
    """A worker's initializer: this worker sees one GPU of its own, taken from the queue of free ones
    (set before anything in the worker touches CUDA)."""
    import os

    os.environ["CUDA_VISIBLE_DEVICES"] = slots.get()


def worker_pool(jobs: int, gpus: list[str]):
    """A pool of `jobs` fresh interpreters (spawn: CUDA cannot be forked once initialised); with
    GPUs, worker i sees GPU i mod len(gpus) alone."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    if not gpus:
        return ProcessPoolExecutor(max_workers=jobs, mp_context=context)
    slots = context.Queue()
    for worker in range(jobs):
        slots.put(gpus[worker % len(gpus)])
    return ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_pin_gpu, initargs=(slots,))


def _in_parallel(spec: ExperimentSpec, spec_path: Path | None, seeds: list[int], jobs: int) -> list[dict]:
    """Each seed in a worker process, `jobs` at a time. With GPUs, the workers are spread over them
    round-robin (each sees one: CUDA_VISIBLE_DEVICES), instead of all landing on GPU 0. Every seed
    runs to its end even when another fails (what they wrote is kept); then the first failure is raised."""
    import os

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    import torch

    # The threads one process would use (OMP_NUM_THREADS, else the cores), shared among the jobs.
    threads = max(1, min(cores, torch.get_num_threads()) // jobs)
    log.info("seeds %s: %d seeds, %d at a time, %d torch thread(s) each", spec.name, len(seeds), jobs, threads)
    gpus = visible_gpus()
    if gpus:
        log.info("seeds %s: the %d workers spread over GPU(s) %s", spec.name, jobs, ", ".join(gpus))
    with worker_pool(jobs, gpus) as pool:
        futures = [pool.submit(run_one_seed, spec, spec_path, seed, index, len(seeds), threads)
                   for index, seed in enumerate(seeds, start=1)]
        outcomes = []
        for future in futures:
            try:
                outcomes.append(future.result())
            except Exception as err:  # noqa: BLE001 - re-raised below, after the other seeds finish
                outcomes.append(err)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return outcomes


def run_seeds(spec: ExperimentSpec, spec_path: Path | None, seeds: list[int], jobs: int = 1) -> dict:
    """Train (where the spec trains a model) and evaluate the spec once per seed (`jobs` seeds at
    once), then write metrics/<name>/seeds.json with the spread of every headline figure."""
    setup_logging()
    from pipeline import stages

    jobs = parse_jobs(jobs, seeds)
    if spec.seed not in seeds:
        raise PipelineError(f"{spec.name}: the seeds must include the spec's own seed ({spec.seed}), whose outputs "
                            f"carry the spec's name and which DVC's stages train: e.g. --seeds "
                            f"{','.join(map(str, [spec.seed, *seeds]))}, or set the spec's seed to one of them")
    stages.fetch(spec)
    if jobs > 1:
        evaluated = _in_parallel(spec, spec_path, seeds, jobs)
    else:
        evaluated = [run_one_seed(spec, spec_path, seed, index, len(seeds)) for index, seed in enumerate(seeds, 1)]
    if is_secondary():
        return {}
    evaluations = [(seed, variant(spec, seed).name, ev) for seed, ev in zip(seeds, evaluated, strict=True)]
    summary = summarise_evaluations(spec.name, evaluations)
    write_json(paths.metrics_dir(spec.name) / "seeds.json", summary)
    for headline in summary["headlines"]:
        log.info("seeds %s: %-14s %s over %d seeds", spec.name, headline["task"],
                 spread(headline["value"], headline["unit"]), len(seeds))
    return summary

"""The sparse family's report: every `sparse_cnn` spec's clean accuracy and Numenta's noise score
(correct test classifications summed over the levels of pixel noise), and each sparse spec's noise
score against its dense twin (`sparse_X` against `dense_X`: the same layers and training, ReLU
and dense weights), for `pipeline report` and the docs page."""

from __future__ import annotations

from pathlib import Path

from pipeline.formatting import Section, spread, table

COLUMNS = ("spec", "clean accuracy", "noise score", f"accuracy, {50}% of pixels set", "noise score vs dense",
           "clean accuracy vs dense", "seeds")


def _twin(name: str) -> str | None:
    return "dense_" + name.removeprefix("sparse_") if name.startswith("sparse_") else None


def noise_table(results: list[dict]) -> str:
    scored = {r["spec"]: r for r in results if r.get("model") == "sparse_cnn"
              and "noise_score" in r.get("metrics", {}).get("noise_robustness", {})}
    rows = []
    for name, result in sorted(scored.items()):
        noise, network = result["metrics"]["noise_robustness"], result["metrics"].get("network", {})
        twin = scored.get(_twin(name) or "")
        versus = clean_versus = "-"
        if twin is not None:
            base = twin["metrics"]["noise_robustness"]["noise_score"]["mean"]
            versus = f"{100 * (noise['noise_score']['mean'] / base - 1):+.1f}%"
            base_clean = twin["metrics"].get("network", {}).get("accuracy")
            if base_clean and network.get("accuracy"):
                clean_versus = f"{100 * (network['accuracy']['mean'] - base_clean['mean']):+.2f} points"
        rows.append([f"`{name}`", spread(network.get("accuracy"), "accuracy"),
                     f"**{spread(noise['noise_score'], 'correct')}**", spread(noise.get("accuracy_noise_0.5"),
                                                                             "accuracy"),
                     versus, clean_versus, str(len(result.get("runs", [])))])
    return table(rows, COLUMNS) if rows else ""


def sections(results: list[dict], figures: Path | None = None, link: str = "", check: bool = False) -> list[Section]:
    """The report hook (`Plugin.report`)."""
    text = noise_table(results)
    if not text:
        return []
    return [Section("Noise robustness of sparse and dense networks",
                    "Test accuracy without noise, and the noise score: test images classified correctly, summed "
                    "over 11 levels of pixel noise (0 to 50% of each image's pixels set to 0.75), as Ahmad & "
                    "Scheinkman score it; each sparse spec against its dense twin.\n\n" + text)]

"""The OOD report: every spec scored by `calibration` and `ood_detection` side by side (mean ± standard
deviation over seeds), for `pipeline report` and the plugin's docs page; and the sequence models
scored by `length_generalization`, accuracy against length."""

from __future__ import annotations

from pathlib import Path

from pipeline.formatting import Section, spread, table

SCORES = (("msp", "max softmax"), ("energy", "energy"), ("own", "own"))
CALIBRATION_COLUMNS = ("spec", "kind", "accuracy", "ECE", "ECE, temperature scaled", "NLL", "Brier", "seeds")


def _cell(metrics: dict, key: str, unit: str = "accuracy") -> str:
    return spread(metrics.get(key), unit) if metrics.get(key) else "-"


def _plain(metrics: dict, key: str) -> str:
    """A figure without a unit (NLL, Brier), three decimals."""
    stats = metrics.get(key)
    if not stats:
        return "-"
    return f"{stats['mean']:.3f}" + (f" ± {stats['std']:.3f}" if stats.get("std") is not None else "")


def calibration_table(results: list[dict]) -> str:
    rows = []
    for result in results:
        metrics = result.get("metrics", {}).get("calibration")
        if metrics:
            rows.append([f"`{result['spec']}`", result.get("model", "-"), _cell(metrics, "accuracy"),
                         f"**{_cell(metrics, 'ece')}**", _cell(metrics, "ece_temperature"), _plain(metrics, "nll"),
                         _plain(metrics, "brier"), str(len(result.get("runs", [])))])
    return table(rows, CALIBRATION_COLUMNS) if rows else ""


def detection_table(results: list[dict]) -> str:
    columns = ("spec", "families", *(f"FPR95, {title}" for _, title in SCORES),
               *(f"AUROC, {title}" for _, title in SCORES), "seeds")
    rows = []
    for result in results:
        metrics = result.get("metrics", {}).get("ood_detection")
        if metrics:
            families = sorted({key.split("/")[0] for key in metrics if not key.startswith("mean/")})
            rows.append([f"`{result['spec']}`", ", ".join(f"`{f}`" for f in families),
                         *(_cell(metrics, f"mean/{score}/fpr95") for score, _ in SCORES),
                         *(_cell(metrics, f"mean/{score}/auroc") for score, _ in SCORES),
                         str(len(result.get("runs", [])))])
    return table(rows, columns) if rows else ""


def family_table(results: list[dict]) -> str:
    """FPR95 of the energy score and of the max softmax on each family, spec by spec."""
    families: list[str] = []
    found = []
    for result in results:
        metrics = result.get("metrics", {}).get("ood_detection")
        if metrics:
            found.append((result, metrics))
            families += [f for f in sorted({k.split("/")[0] for k in metrics if not k.startswith("mean/")})
                         if f not in families]
    rows = [[f"`{result['spec']}`", *(f"{_cell(metrics, f'{f}/energy/fpr95')} / {_cell(metrics, f'{f}/msp/fpr95')}"
                                      if f"{f}/energy/fpr95" in metrics else "-" for f in families)]
            for result, metrics in found]
    return table(rows, ("spec", *(f"`{f}`" for f in families))) if rows else ""


def length_table(results: list[dict]) -> str:
    rows, lengths = [], set()
    scored = [(r, r.get("metrics", {}).get("length_generalization")) for r in results]
    scored = [(r, m) for r, m in scored if m]
    for _, metrics in scored:
        lengths |= {int(key.rsplit("_", 1)[1]) for key in metrics if key.startswith("accuracy_length_")}
    ordered = sorted(lengths)
    for result, metrics in scored:
        rows.append([f"`{result['spec']}`", result.get("model", "-"),
                     *(_cell(metrics, f"accuracy_length_{n}") for n in ordered), str(len(result.get("runs", [])))])
    return table(rows, ("spec", "kind", *(f"length {n}" for n in ordered), "seeds")) if rows else ""


def sections(results: list[dict], figures: Path | None = None, link: str = "", check: bool = False) -> list[Section]:
    """The report hook (`Plugin.report`)."""
    found = []
    for title, intro, text in (
            ("Calibration", "On the test split; temperature scaling fitted on the validation split.",
             calibration_table(results)),
            ("OOD detection", "FPR95 (lower is better) and AUROC, means over the OOD families, of the max softmax, "
                              "the energy score and the method's own score.", detection_table(results)),
            ("FPR95 on each family", "Energy score / max softmax.", family_table(results)),
            ("Length generalisation", "Test accuracy on the same examples at the length trained at and longer.",
             length_table(results))):
        if text:
            found.append(Section(title, intro + "\n\n" + text))
    return found

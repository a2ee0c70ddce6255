"""The spiking family's report: every spiking network among the results side by side, by what it
spends (spikes, sparsity, synaptic operations against the same-shaped network's MACs, the energy
estimate) beside its accuracy; for `pipeline report` and its docs page."""

from __future__ import annotations

from pathlib import Path

from pipeline.formatting import Section, spread, table

COLUMNS = ("spec", "network accuracy", "spikes per example", "sparsity", "synaptic ops per example",
           "ANN MACs per example", "energy, ANN / SNN", "seeds")


def _cell(stats: dict | None, unit: str) -> str:
    if stats is None:
        return "-"
    if unit == "count":
        text = f"{stats['mean']:,.0f}"
        return text + (f" ± {stats['std']:,.0f}" if stats.get("std") is not None else "")
    return spread(stats, unit)


def spike_table(results: list[dict]) -> str:
    """One row per spec that ran the spike statistics, highest energy ratio first."""
    rows = []
    for result in results:
        spikes = result.get("metrics", {}).get("spike_stats")
        if not spikes:
            continue
        network = result.get("metrics", {}).get("network", {}).get("accuracy")
        ratio = spikes.get("energy_ratio_ann_over_snn")
        rows.append((-(ratio or {}).get("mean", 0.0), result["spec"], [
            f"`{result['spec']}`", _cell(network, "accuracy"), _cell(spikes.get("spikes_per_sample"), "count"),
            _cell(spikes.get("sparsity"), "accuracy"), _cell(spikes.get("synaptic_ops_per_sample"), "count"),
            _cell(spikes.get("ann_macs_per_sample"), "count"), f"**{_cell(ratio, 'x')}**",
            str(len(result.get("runs", [])))]))
    return table([row for *_, row in sorted(rows)], COLUMNS) if rows else ""


def sections(results: list[dict], figures: Path | None = None, link: str = "", check: bool = False) -> list[Section]:
    """The report hook (`Plugin.report`): the spike-statistics table, where a spiking network is among
    `results` (sparsity: the share of neuron-steps without a spike)."""
    text = spike_table(results)
    return [Section("What the spiking networks spend", text)] if text else []

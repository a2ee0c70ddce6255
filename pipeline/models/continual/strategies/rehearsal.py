"""Strategies that keep examples: experience replay (a reservoir or class-balanced buffer of raw
inputs replayed beside every batch) and GDumb (a greedy class-balanced buffer the network is
retrained on from scratch). Inputs are kept as the dataset stores them (uint8 pixels of images:
one byte each), the label as uint8 (int16 past 256 classes). An example's experience is kept
too where it says something the label does not, in a domain-incremental stream (uint8, int16
past 256 experiences); in a class- or task-incremental one it is the experience of the label's
class, recomputed when needed. Every byte kept is counted."""

from __future__ import annotations

import torch

from pipeline.data.datamodule import Fields
from pipeline.models.continual.strategies import Strategy, small_int, stored_bytes


def capacity(memory, per_sample: int) -> int:
    """A budget (MemorySpec) in examples of `per_sample` bytes."""
    if memory.samples is not None:
        return memory.samples
    if memory.bytes < per_sample:
        raise ValueError(f"memory.bytes {memory.bytes:,} holds no example ({per_sample:,} bytes each): "
                         "raise memory.bytes")
    return memory.bytes // per_sample


def groups(fields: Fields, by_experience: bool) -> torch.Tensor:
    """What a balanced buffer shares its room between: classes, or in a domain-incremental stream
    (every class in every experience) each (class, experience) pair."""
    if not by_experience:
        return fields["label"]
    return fields["label"] * 1_000_003 + fields["task"]


class ExampleBuffer(Strategy):
    """Keeps examples as buffers that grow as the stream goes on: `kept_input` as stored,
    `kept_label` and, in a domain-incremental stream, `kept_task` (see the module's docstring)."""

    def __init__(self, spec, net):
        super().__init__(spec, net)
        for name in ("input", "label", "task"):
            self.register_buffer(f"kept_{name}", None)

    @property
    def keeps_task(self) -> bool:
        return bool(self.net.domain_incremental)

    def stored(self) -> Fields:
        """The examples kept, as the stream gives them (int64 labels and experiences)."""
        if self.kept_label is None:
            return {}
        return self.rows(slice(None))

    def rows(self, index: torch.Tensor | slice) -> Fields:
        """Kept examples `index`, as the stream gives them (only those converted)."""
        label = self.kept_label[index].long()
        task = self.kept_task[index].long() if self.keeps_task else self.net.experience_of(label)
        return {"input": self.kept_input[index], "label": label, "task": task}

    def store(self, fields: Fields) -> None:
        self.kept_input = fields["input"].clone()
        self.kept_label = fields["label"].to(small_int(self.net.num_classes))
        if self.keeps_task:
            self.kept_task = fields["task"].to(small_int(len(self.experiences)))

    def room(self, fields: Fields) -> int:
        """The buffer's capacity in examples of `fields`' kind."""
        return capacity(self.spec.memory, self.sample_bytes(fields))

    def sample_bytes(self, fields: Fields) -> int:
        """Bytes one stored example of `fields`' kind takes: its input as stored, its label and
        (`keeps_task`) its experience."""
        inputs = fields["input"]
        ids = small_int(self.net.num_classes).itemsize
        if self.keeps_task:
            ids += small_int(len(self.experiences)).itemsize
        return inputs[0].numel() * inputs.element_size() + ids

    def generator(self, index: int) -> torch.Generator:
        return torch.Generator().manual_seed(int(self.net.seed) * 1_000_003 + 7 * index + 1)

    def memory(self) -> dict[str, float]:
        if self.kept_label is None:
            return super().memory()
        size = sum(stored_bytes(v) for v in (self.kept_input, self.kept_label, self.kept_task) if v is not None)
        return {"memory_samples": len(self.kept_label), "memory_bytes": size}


def class_balanced(kept: Fields, new: Fields, room: int, generator: torch.Generator,
                   by_experience: bool = False) -> Fields:
    """Equal room for each class seen (the remainder to the first classes; with `by_experience`,
    for each (class, experience)), each share its first examples kept (old classes give up their
    last ones) or a random draw of the new."""
    both = {name: torch.cat([kept[name], new[name]]) for name in new} if kept else new
    old_count = len(kept["label"]) if kept else 0
    keys = groups(both, by_experience)
    classes = keys.unique()
    share, extra = divmod(room, len(classes))
    keep = []
    for rank, c in enumerate(classes.tolist()):
        quota = share + (1 if rank < extra else 0)
        where = (keys == c).nonzero().flatten()
        old = where[where < old_count]
        fresh = where[where >= old_count]
        fresh = fresh[torch.randperm(len(fresh), generator=generator)]
        keep.append(torch.cat([old, fresh])[:quota])
    index = torch.cat(keep).sort().values
    return {name: values[index] for name, values in both.items()}


class Replay(ExampleBuffer):
    """Experience replay. The buffer is updated once an experience's training is done; each step
    of the experiences after the first trains on the batch and `batch_size` examples drawn at
    random from the buffer (the same cross-entropy over both)."""

    def __init__(self, spec, net):
        super().__init__(spec, net)
        self.register_buffer("stream_seen", torch.zeros((), dtype=torch.int64))

    def loss(self, batch: Fields) -> torch.Tensor:
        if self.kept_label is not None:
            count = len(self.kept_label)
            size = min(self.spec.batch_size or len(batch["label"]), count)
            drawn = self.rows(torch.randint(count, (size,), device=self.kept_label.device))
            batch = {name: torch.cat([batch[name], drawn[name]]) for name in ("input", "label", "task")}
        return super().loss(batch)

    def end_experience(self, index: int) -> None:
        new = self.experiences[index].train
        device = self.net.head.weight.device
        room = self.room(new)
        generator = self.generator(index)
        if self.spec.policy == "class_balanced":
            kept = {name: v.cpu() for name, v in self.stored().items()}
            chosen = class_balanced(kept, new, room, generator, by_experience=self.net.domain_incremental)
        else:
            chosen = self.reservoir(new, room, generator)
        self.store({name: v.to(device) for name, v in chosen.items()})

    def reservoir(self, new: Fields, room: int, generator: torch.Generator) -> Fields:
        """Vitter's algorithm R over the stream: the n-th example seen replaces a random slot with
        probability room / n, so that every example seen so far is kept with equal probability."""
        kept = {name: v.cpu().clone() for name, v in self.stored().items()}
        order = torch.randperm(len(new["label"]), generator=generator)
        seen = int(self.stream_seen)
        fill = max(0, min(room - (len(kept["label"]) if kept else 0), len(order)))
        if fill:
            head = {name: values[order[:fill]] for name, values in new.items()}
            kept = {name: torch.cat([kept[name], head[name]]) for name in head} if kept else head
        slots = torch.randint(0, 2**62, (len(order),), generator=generator)
        for position in range(fill, len(order)):
            n = seen + position + 1
            slot = int(slots[position] % n)
            if slot < room:
                example = int(order[position])
                for name in kept:
                    kept[name][slot] = new[name][example]
        self.stream_seen.fill_(seen + len(order))
        return kept


class GDumb(ExampleBuffer):
    """GDumb. When experience i's phase starts, its examples enter a greedy class-balanced buffer
    (an example is taken while there is room, or while its class holds fewer than room / classes
    seen, in place of a random example of the largest class; in a domain-incremental stream, the
    same over (class, experience) pairs); the phase trains on the buffer
    alone, from the network's initial weights (restored after each experience is measured)."""

    def __init__(self, spec, net):
        super().__init__(spec, net)
        self.register_buffer("filled_through", torch.zeros((), dtype=torch.int64))
        self.initial = {name: value.detach().clone() for name, value in net.state_dict().items()
                        if name.startswith(("encoder.", "head."))}

    def train_fields(self, index: int) -> Fields:
        if int(self.filled_through) <= index:  # not yet filled with this experience (a resumed phase was)
            self.store(self.greedy(self.experiences[index].train, index))
            self.filled_through.fill_(index + 1)
        return {name: v.cpu() for name, v in self.stored().items()}

    def greedy(self, new: Fields, index: int) -> Fields:
        room = self.room(new)
        generator = self.generator(index)
        kept = {name: list(v.cpu()) for name, v in self.stored().items()} or {name: [] for name in new}
        by_experience = self.net.domain_incremental
        slots: dict[int, list[int]] = {}  # class (or class and experience) -> the buffer's slots holding it
        if kept["label"]:
            for slot, key in enumerate(groups({n: torch.stack(v) for n, v in kept.items()}, by_experience).tolist()):
                slots.setdefault(key, []).append(slot)
        new_keys = groups(new, by_experience).tolist()
        for example in torch.randperm(len(new["label"]), generator=generator).tolist():
            label = new_keys[example]
            if len(kept["label"]) < room:
                slot = len(kept["label"])
                for name in new:
                    kept[name].append(new[name][example])
            else:
                classes = len(slots.keys() | {label})
                if len(slots.get(label, [])) >= room // classes:
                    continue
                largest = max(slots, key=lambda c: len(slots[c]))
                slot = slots[largest].pop(int(torch.randint(len(slots[largest]), (1,), generator=generator)))
                for name in new:
                    kept[name][slot] = new[name][example]
            slots.setdefault(label, []).append(slot)
        return {name: torch.stack(values) for name, values in kept.items()}

    def next_experience(self, index: int) -> None:
        own = {name: value for name, value in self.initial.items()}
        self.net.load_state_dict({**self.net.state_dict(), **own})

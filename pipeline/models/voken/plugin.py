"""Vokenization's entries: the token-image matcher, the language model with a voken head, and
their tasks (retrieval, vokenizing a corpus, probing text features)."""

from typing import Any, Protocol, runtime_checkable

from pipeline.capabilities import Encoder
from pipeline.models.voken import RetrievalSpec, TextProbeSpec, VokenizeSpec, VokenLMSpec, VokenMatcherSpec
from pipeline.plugins import ModelEntry, Plugin, TaskEntry


@runtime_checkable
class Matcher(Protocol):
    """Token and image embeddings in one space: `token_embeddings(tokens)`,
    `image_embeddings(images)`, `caption_image_scores(tokens, images)`, and `real_tokens(tokens)`
    (the mask of tokens that are not padding or special)."""

    def token_embeddings(self, tokens: Any) -> Any: ...

    def image_embeddings(self, images: Any) -> Any: ...

    def caption_image_scores(self, tokens: Any, images: Any) -> Any: ...

    def real_tokens(self, tokens: Any) -> Any: ...


@runtime_checkable
class LanguageModel(Protocol):
    """Sentence features of token ids: its `encoder` maps ids [B, L] to vectors, `hidden(ids)` to
    each token's last-layer state."""

    encoder: Any

    def hidden(self, ids: Any) -> Any: ...


def _text_probes(data: str) -> list[dict]:
    """A language model's features are of token ids: probed on text tasks, not on its own
    (unlabelled) corpus."""
    return [{"kind": "text_probe", "dataset": "wordnet_supersense"},
            {"kind": "text_probe", "dataset": "grounded_facts"}]


PLUGIN = Plugin(
    name="voken",
    summary="Vokenized grounding (Tan & Bansal 2020): a token-image matcher, a corpus vokenized by it, a language "
            "model with a voken head",
    models={
        "voken_matcher": ModelEntry(
            spec=VokenMatcherSpec, module="pipeline.models.voken.matcher:VokenMatcher",
            summary="Vokenization token-image matcher (Tan & Bansal 2020): caption transformer and image CNN (or an "
                    "upstream encoder) in a joint space, token-image hinge ranking loss over in-batch negatives",
            modalities=("image-text",), provides=(Encoder, Matcher), takes_encoder=True),
        "voken_lm": ModelEntry(
            spec=VokenLMSpec, module="pipeline.models.voken.lm:VokenLM",
            summary="Small BERT (Tan & Bansal 2020): masked language modelling plus voken classification of every "
                    "token (matched vokens, a random per-type control, or none)",
            modalities=("text",), provides=(Encoder, LanguageModel), default_tasks=_text_probes),
    },
    tasks={
        "retrieval": TaskEntry(
            RetrievalSpec, "pipeline.models.voken.retrieval", (Matcher,),
            "caption-image retrieval recall@k on held-out scenes, against untrained and chance",
            data="image-text", default=90),
        "vokenize": TaskEntry(
            VokenizeSpec, "pipeline.models.voken.vokenize", (Matcher,),
            "writes a text corpus with each token's voken (its best-matching image) as a dataset",
            writes="text", data="image-text", default=100),
        "text_probe": TaskEntry(
            TextProbeSpec, "pipeline.models.voken.text_probe", (LanguageModel,),
            "logistic regression on a language model's sentence features for a text task, against untrained "
            "and the majority class", data="any"),
    },
    report="pipeline.models.voken.report:sections",
)

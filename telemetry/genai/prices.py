"""The price table behind the estimated-cost metric.

Prices are USD per million tokens, the unit providers publish. The built-in entries are list
prices of a few common models at the time of writing: an *estimate* for dashboards and
budget alerts, not an invoice. Extend or override them with ``TELEMETRY_GENAI_PRICES`` (JSON,
``{"my-model": {"input": 0.5, "output": 1.5}}``) or ``TelemetrySettings(genai_prices=...)``;
keys are model names or ``fnmatch`` patterns (``"gpt-4o-mini*"`` also prices the dated
``gpt-4o-mini-2024-07-18`` a response reports). A model without a price costs nothing in the
metric rather than a guess.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["DEFAULT_PRICES", "ModelPrice", "PriceTable"]


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens. ``cached_input`` prices input tokens read from the provider's
    prompt cache (None: as ``input``); ``reasoning_output`` as ``output`` when None."""

    input: float
    output: float
    cached_input: float | None = None
    reasoning_output: float | None = None

    def cost(
        self,
        input_tokens: float = 0,
        output_tokens: float = 0,
        cached_input_tokens: float = 0,
        reasoning_output_tokens: float = 0,
    ) -> float:
        """USD for one call. Cached and reasoning tokens are subsets of input and output
        tokens, as in the GenAI conventions (and in Relay's cost computation)."""
        cached = min(cached_input_tokens, input_tokens)
        reasoning = min(reasoning_output_tokens, output_tokens)
        cached_price = self.input if self.cached_input is None else self.cached_input
        reasoning_price = self.output if self.reasoning_output is None else self.reasoning_output
        usd_per_million = (
            (input_tokens - cached) * self.input
            + cached * cached_price
            + (output_tokens - reasoning) * self.output
            + reasoning * reasoning_price
        )
        return usd_per_million / 1_000_000


DEFAULT_PRICES: Mapping[str, ModelPrice] = {
    "gpt-4o": ModelPrice(2.50, 10.00, cached_input=1.25),
    "gpt-4o-2024-*": ModelPrice(2.50, 10.00, cached_input=1.25),
    "gpt-4o-mini*": ModelPrice(0.15, 0.60, cached_input=0.075),
    "gpt-4.1": ModelPrice(2.00, 8.00, cached_input=0.50),
    "gpt-4.1-mini*": ModelPrice(0.40, 1.60, cached_input=0.10),
    "gpt-4.1-nano*": ModelPrice(0.10, 0.40, cached_input=0.025),
    "o3-mini*": ModelPrice(1.10, 4.40, cached_input=0.55),
    "claude-3-haiku*": ModelPrice(0.25, 1.25, cached_input=0.03),
    "claude-3-5-haiku*": ModelPrice(0.80, 4.00, cached_input=0.08),
    "claude-3-sonnet*": ModelPrice(3.00, 15.00, cached_input=0.30),
    "claude-3-5-sonnet*": ModelPrice(3.00, 15.00, cached_input=0.30),
    "claude-sonnet-4*": ModelPrice(3.00, 15.00, cached_input=0.30),
    "claude-opus-4*": ModelPrice(15.00, 75.00, cached_input=1.50),
    # Open-weight models served by the user's own infrastructure cost what it costs:
    # no default; add a price to see them in the cost panels.
}


class PriceTable:
    """Model name -> price: exact names first, then the longest matching pattern."""

    def __init__(self, prices: Mapping[str, ModelPrice | Mapping[str, float]] | None = None):
        merged: dict[str, ModelPrice] = dict(DEFAULT_PRICES)
        for model, price in (prices or {}).items():
            merged[model] = price if isinstance(price, ModelPrice) else _parse(model, price)
        self._exact = {k: v for k, v in merged.items() if not _is_pattern(k)}
        # Longest pattern first: "gpt-4o-mini*" must win over "gpt-4o*" for the mini model.
        self._patterns = sorted(
            ((k, v) for k, v in merged.items() if _is_pattern(k)), key=lambda kv: -len(kv[0])
        )
        self._cache: dict[str, ModelPrice | None] = {}

    def price(self, model: str | None) -> ModelPrice | None:
        if not model:
            return None
        if model in self._cache:
            return self._cache[model]
        found = self._exact.get(model)
        if found is None:
            found = next((p for k, p in self._patterns if fnmatch.fnmatchcase(model, k)), None)
        if len(self._cache) < 1024:  # model names come from responses: stay bounded
            self._cache[model] = found
        return found


def _is_pattern(key: str) -> bool:
    return any(ch in key for ch in "*?[")


def _parse(model: str, price: Mapping[str, float]) -> ModelPrice:
    try:
        return ModelPrice(
            input=float(price["input"]),
            output=float(price["output"]),
            cached_input=_optional(price.get("cached_input")),
            reasoning_output=_optional(price.get("reasoning_output")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"price of {model!r} needs numeric 'input' and 'output' (USD per million tokens), "
            f"got {dict(price)!r}"
        ) from exc


def _optional(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]

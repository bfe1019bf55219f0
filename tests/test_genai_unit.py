"""Unit checks of telemetry.genai: message JSON truncation, the price table, settings."""

from __future__ import annotations

import json

import pytest

from telemetry.genai.prices import ModelPrice, PriceTable
from telemetry.scrubbing import ScrubbingPolicy
from telemetry.scrubbing.messages import fit_json, fit_message_attribute
from telemetry.settings import TelemetrySettings

POLICY = ScrubbingPolicy.default()


def messages(count: int, size: int) -> list[dict[str, object]]:
    return [
        {"role": "user", "parts": [{"type": "text", "content": f"m{i} " + "x" * size}]}
        for i in range(count)
    ]


def test_long_input_messages_lose_whole_old_messages_and_stay_valid_json() -> None:
    text = json.dumps(messages(50, 500))
    out = fit_message_attribute("gen_ai.input.messages", text, 8192, POLICY.scrub_value)
    assert out is not None and len(out) <= 8192
    kept = json.loads(out)
    assert 1 < len(kept) < 50
    assert kept[-1]["parts"][0]["content"].startswith("m49 ")  # the newest is kept, whole
    assert all(len(m["parts"][0]["content"]) == 504 for m in kept)


def test_output_messages_keep_the_first_choices() -> None:
    text = json.dumps(messages(30, 500))
    out = fit_message_attribute("gen_ai.output.messages", text, 4096, POLICY.scrub_value)
    assert out is not None and json.loads(out)[0]["parts"][0]["content"].startswith("m0 ")


def test_one_huge_message_has_its_text_cut_inside_valid_json() -> None:
    text = json.dumps(messages(1, 50_000))
    out = fit_json(text, 8192, POLICY.scrub_value, keep_last=True)
    assert out is not None and len(out) <= 8192
    (message,) = json.loads(out)
    assert "[truncated, 50003 chars]" in message["parts"][0]["content"]


def test_secrets_inside_messages_are_scrubbed_by_key_and_by_shape() -> None:
    user = {"type": "text", "content": "key sk-abcdefghijklmnopqrstuvwx"}
    tool = {"type": "tool_call_response", "response": {"password": "p4ss"}}
    text = json.dumps([{"role": "user", "parts": [user]}, {"role": "tool", "parts": [tool]}])
    out = fit_message_attribute("gen_ai.input.messages", text, 8192, POLICY.scrub_value)
    assert out is not None and "sk-abcdef" not in out and "p4ss" not in out
    assert json.loads(out)[1]["parts"][0]["response"]["password"] == "[Filtered]"


def test_clean_short_messages_pass_unchanged_and_other_attributes_are_not_touched() -> None:
    text = json.dumps(messages(2, 10))
    assert fit_message_attribute("gen_ai.input.messages", text, 8192, POLICY.scrub_value) is text
    assert fit_message_attribute("http.url", text, 8192, POLICY.scrub_value) is None
    assert (
        fit_message_attribute("gen_ai.input.messages", "not json", 64, POLICY.scrub_value) is None
    )


def test_span_attribute_scrubbing_uses_the_structure_aware_path() -> None:
    text = json.dumps(messages(40, 400))
    scrubbed = POLICY.scrub_attributes({"gen_ai.input.messages": text})
    assert scrubbed is not None
    assert json.loads(str(scrubbed["gen_ai.input.messages"]))


def test_price_table_exact_pattern_and_user_prices() -> None:
    table = PriceTable({"in-house-7b": {"input": 0.1, "output": 0.2}, "gpt-4o-mini*": {
        "input": 1, "output": 2}})  # fmt: skip
    assert table.price("gpt-4o-mini-2024-07-18") == ModelPrice(1, 2)  # user overrides default
    assert table.price("gpt-4o") is not None and table.price("gpt-4o").input == 2.5  # type: ignore[union-attr]
    assert table.price("in-house-7b") == ModelPrice(0.1, 0.2)
    assert table.price("unknown-model") is None
    # USD per million tokens; cached input tokens are a subset of input tokens.
    assert ModelPrice(1.0, 2.0, cached_input=0.5).cost(1000, 500, cached_input_tokens=400) == (
        pytest.approx((600 * 1.0 + 400 * 0.5 + 500 * 2.0) / 1e6)
    )
    with pytest.raises(ValueError, match="needs numeric 'input' and 'output'"):
        PriceTable({"bad": {"input": 1.0}})


@pytest.mark.usefixtures("clean_env")
def test_content_capture_setting_and_its_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    assert TelemetrySettings().genai_capture_content == "no_content"
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY")
    assert TelemetrySettings().genai_capture_content == "span_only"
    monkeypatch.setenv("TELEMETRY_GENAI_CAPTURE_CONTENT", "false")  # the contract's name wins
    assert TelemetrySettings().genai_capture_content == "no_content"
    monkeypatch.setenv("TELEMETRY_GENAI_PRICES", '{"my-model": {"input": 1, "output": 3}}')
    assert TelemetrySettings().genai_prices == {"my-model": {"input": 1.0, "output": 3.0}}

from __future__ import annotations

from gophergate.core.usage import (
    Usage,
    from_anthropic,
    from_deepseek,
    from_embeddings,
    from_gemini,
    from_images,
    from_moonshot,
    from_openai,
    from_responses,
    from_xai,
)


def test_openai_prompt_includes_cache_and_completion_includes_reasoning() -> None:
    usage = from_openai(
        {
            "prompt_tokens": 100,
            "completion_tokens": 50,
            "prompt_tokens_details": {"cached_tokens": 80, "cache_write_tokens": 10},
            "completion_tokens_details": {"reasoning_tokens": 30},
        }
    )
    assert usage == Usage(prompt=100, completion=50, reasoning=30, cache_read=80, cache_write=10)


def test_deepseek_cache_hit_is_a_read_and_miss_is_not_a_write() -> None:
    usage = from_deepseek(
        {
            "prompt_tokens": 120,
            "completion_tokens": 300,
            "prompt_cache_hit_tokens": 100,
            "prompt_cache_miss_tokens": 20,
            "completion_tokens_details": {"reasoning_tokens": 250},
        }
    )
    assert (usage.prompt, usage.cache_read, usage.cache_write, usage.reasoning) == (120, 100, 0, 250)


def test_xai_completion_excludes_reasoning_so_it_is_added() -> None:
    usage = from_xai(
        {
            "prompt_tokens": 663,
            "completion_tokens": 50,
            "total_tokens": 837,
            "prompt_tokens_details": {"cached_tokens": 654},
            "completion_tokens_details": {"reasoning_tokens": 124},
        }
    )
    assert (usage.prompt, usage.completion, usage.reasoning, usage.cache_read) == (663, 174, 124, 654)
    assert usage.total == 837


def test_moonshot_top_level_cached_tokens() -> None:
    assert from_moonshot({"prompt_tokens": 10, "completion_tokens": 2, "cached_tokens": 8}).cache_read == 8


def test_absent_counts_and_details_of_the_wrong_shape_count_as_zero() -> None:
    assert from_openai({"prompt_tokens": None, "prompt_tokens_details": 5}) == Usage()


def test_string_token_counts_are_parsed_or_marked_estimated() -> None:
    """Counts sent as integer strings are counts; any other count that is not one makes the whole usage
    unknown (None), so the estimate runs and the row is marked estimated instead of billing 0."""
    assert from_openai({"prompt_tokens": "12", "completion_tokens": " 3 "}) == Usage(prompt=12, completion=3)
    assert from_openai({"prompt_tokens": 12.0, "completion_tokens": 3}) == Usage(prompt=12, completion=3)
    for bad in ("12.5", "twelve", "", -1, 1.5, True, [12], {"n": 12}):
        assert from_openai({"prompt_tokens": bad, "completion_tokens": 3}) is None, bad
    assert from_anthropic({"input_tokens": "10", "output_tokens": "x"}) is None
    assert from_gemini({"promptTokenCount": "7", "candidatesTokenCount": 2}) == Usage(prompt=7, completion=2)
    assert from_responses({"input_tokens": 5, "output_tokens": "lots"}) is None
    assert from_embeddings({"prompt_tokens": "8"}) == Usage(prompt=8)
    assert from_deepseek({"prompt_tokens": 10, "prompt_cache_hit_tokens": "nope"}) is None


def test_embeddings_usage_is_prompt_only() -> None:
    assert from_embeddings({"prompt_tokens": 8, "total_tokens": 8}) == Usage(prompt=8)


def test_responses_input_includes_cache_and_output_includes_reasoning() -> None:
    usage = from_responses(
        {
            "input_tokens": 200,
            "input_tokens_details": {"cached_tokens": 150, "cache_write_tokens": 20},
            "output_tokens": 90,
            "output_tokens_details": {"reasoning_tokens": 64},
            "total_tokens": 290,
        }
    )
    assert usage == Usage(prompt=200, completion=90, reasoning=64, cache_read=150, cache_write=20)
    assert usage.total == 290


def test_responses_usage_tolerates_missing_and_null_details() -> None:
    usage = from_responses({"input_tokens": 5, "output_tokens": 2, "input_tokens_details": None})
    assert usage == Usage(prompt=5, completion=2)


def test_gpt_image_usage_counts_text_and_image_input_as_prompt_and_images_as_completion() -> None:
    usage = from_images(
        {
            "input_tokens": 50,
            "input_tokens_details": {"text_tokens": 10, "image_tokens": 40},
            "output_tokens": 4160,
            "total_tokens": 4210,
        }
    )
    assert (usage.prompt, usage.completion, usage.reasoning, usage.cache_read) == (50, 4160, 0, 0)


def test_anthropic_prompt_adds_cache_reads_and_writes_to_input_tokens() -> None:
    usage = from_anthropic(
        {
            "input_tokens": 25,
            "cache_read_input_tokens": 900,
            "cache_creation_input_tokens": 75,
            "cache_creation": {"ephemeral_5m_input_tokens": 75, "ephemeral_1h_input_tokens": 0},
            "output_tokens": 150,
            "output_tokens_details": {"thinking_tokens": 90},
        }
    )
    assert usage == Usage(prompt=1000, completion=150, reasoning=90, cache_read=900, cache_write=75)


def test_anthropic_usage_without_thinking_details_reports_zero_reasoning() -> None:
    usage = from_anthropic({"input_tokens": 10, "cache_read_input_tokens": None, "output_tokens": 3})
    assert usage == Usage(prompt=10, completion=3)

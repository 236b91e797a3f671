"""The precision choice as a pure function of the hardware's capabilities (no hardware needed)."""

from __future__ import annotations

import pytest

from charmcli.model.precision import (
    NATIVE_BF16_CPU_FLAGS,
    PRECISIONS,
    REQUESTS,
    Capabilities,
    choose_precision,
    parse_cpu_flags,
)

# an AVX2-only EPYC (the machine docs/speed.md's AVX2 figures come from) and a Sapphire Rapids Xeon
AVX2_CPU = Capabilities("cpu", frozenset({"sse4_2", "avx", "avx2", "fma", "f16c"}))
AVX512_NO_BF16 = Capabilities("cpu", frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_fp16"}))
AMX_CPU = Capabilities("cpu", frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile"}))
AVX512_BF16_ONLY = Capabilities("cpu", frozenset({"avx2", "avx512f", "avx512_bf16"}))
AMPERE = Capabilities("cuda", cuda_bf16=True, cuda_name="A100")
TURING = Capabilities("cuda", cuda_bf16=False, cuda_name="T4")


@pytest.mark.parametrize(
    ("caps", "expected"),
    [
        (AVX2_CPU, "fp32"),
        (AVX512_NO_BF16, "fp32"),
        (Capabilities("cpu"), "fp32"),
        (AMX_CPU, "bf16"),
        (AVX512_BF16_ONLY, "bf16"),
        (AMPERE, "bf16"),
        (TURING, "fp16"),
    ],
)
def test_auto_picks_native_reduced_precision_only(caps: Capabilities, expected: str) -> None:
    choice = choose_precision("auto", caps)
    assert choice.precision == expected
    assert choice.requested == "auto"
    assert choice.describe().startswith(f"{expected} (auto: ")


@pytest.mark.parametrize("flag", sorted(NATIVE_BF16_CPU_FLAGS))
def test_each_native_flag_alone_is_enough(flag: str) -> None:
    assert choose_precision("auto", Capabilities("cpu", frozenset({flag}))).precision == "bf16"


@pytest.mark.parametrize("caps", [AVX2_CPU, AMX_CPU, AMPERE, TURING])
def test_fp32_is_always_fp32(caps: Capabilities) -> None:
    assert choose_precision("fp32", caps).precision == "fp32"


def test_explicit_bf16_is_honoured_on_any_cpu_and_says_when_emulated() -> None:
    emulated = choose_precision("bf16", AVX2_CPU)
    assert emulated.precision == "bf16"
    assert "emulated" in emulated.reason
    assert "emulated" not in choose_precision("bf16", AMX_CPU).reason


def test_explicit_bf16_on_a_gpu_without_it_is_fp16() -> None:
    assert choose_precision("bf16", TURING).precision == "fp16"
    assert choose_precision("bf16", AMPERE).precision == "bf16"


def test_every_choice_is_a_known_precision() -> None:
    for requested in REQUESTS:
        for caps in (AVX2_CPU, AVX512_NO_BF16, AMX_CPU, AMPERE, TURING):
            assert choose_precision(requested, caps).precision in PRECISIONS


def test_unknown_request_is_refused() -> None:
    with pytest.raises(ValueError, match="fp32, bf16, auto"):
        choose_precision("int8", AMX_CPU)


def test_cpuinfo_flags_are_read_from_the_flags_line() -> None:
    text = "processor\t: 0\nmodel name\t: Xeon\nflags\t\t: fpu AVX2 amx_bf16 avx512_bf16\nbugs\t: x\n"
    assert parse_cpu_flags(text) == frozenset({"fpu", "avx2", "amx_bf16", "avx512_bf16"})
    assert parse_cpu_flags("Features\t: fp asimd bf16\n") == frozenset({"fp", "asimd", "bf16"})
    assert parse_cpu_flags("nothing here\n") == frozenset()


@pytest.mark.parametrize(
    ("requested", "caps", "cpu_reduced", "line"),
    [
        ("fp32", AMX_CPU, True, "fp32 (fp32: asked for)"),
        ("auto", AMPERE, True, "bf16 (auto: A100 has bf16)"),
        ("bf16", Capabilities("cuda", cuda_bf16=True), True, "bf16 (bf16: GPU has bf16)"),
        ("auto", TURING, True, "fp16 (auto: T4 has no bf16, fp16 instead)"),
        ("auto", Capabilities("cuda"), True, "fp16 (auto: GPU has no bf16, fp16 instead)"),
        ("auto", AMX_CPU, False, "fp32 (auto: this model runs fp32 on a CPU)"),
        ("auto", AMX_CPU, True, "bf16 (auto: CPU has amx_bf16, avx512_bf16)"),
        ("bf16", AVX512_BF16_ONLY, True, "bf16 (bf16: CPU has avx512_bf16)"),
        ("bf16", AVX2_CPU, True, "bf16 (bf16: asked for; CPU has no native bf16, emulated (slow))"),
        ("auto", AVX2_CPU, True, "fp32 (auto: CPU has no native bf16 (no amx_bf16 / avx512_bf16))"),
    ],
)
def test_every_choice_says_why_in_one_line(requested, caps, cpu_reduced, line) -> None:
    """What --profile and charm show print: the precision, what was asked, and the reason."""
    assert choose_precision(requested, caps, cpu_reduced=cpu_reduced).describe() == line


def test_cpuinfo_without_a_flags_line_and_arm_features() -> None:
    assert parse_cpu_flags("processor : 0\nmodel name : X\n") == frozenset()
    assert parse_cpu_flags("Features\t: fp asimd BF16 sve\n") == frozenset({"fp", "asimd", "bf16", "sve"})
    assert parse_cpu_flags("flags : A:B c\nflags : later\n") == frozenset({"a:b", "c"})

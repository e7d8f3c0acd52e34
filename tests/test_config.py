import re

import pytest

from ganbench.config import RunConfig, parse_digits, parse_names, resolve
from ganbench.errors import ConfigError


@pytest.mark.parametrize("kwargs, fragment", [
    ({"steps": 0}, "--steps must be a positive integer"),
    ({"steps": -3}, "--steps must be a positive integer"),
    ({"batch_size": 0}, "--batch-size must be a positive integer"),
    ({"image_size": 48}, "power of two"),
    ({"dtype": "fp8"}, "--dtype must be one of"),
    ({"device": "tpu"}, "--device must be auto, cpu, cuda"),
    ({"digits": (7, 11)}, "between 0 and 9"),
    ({"digits": (7, 7)}, "twice"),
    ({"steps": 5, "warmup": 5}, "must be smaller than --steps"),
    ({"eval_every": -1}, "--eval-every"),
    ({"target_fid": 0.0}, "--target-fid"),
])
def test_bad_values_fail_with_one_line(kwargs, fragment):
    with pytest.raises(ConfigError) as info:
        RunConfig(plugins=("dcgan",), **kwargs)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_names_and_digits_parsing():
    assert parse_names(" sagan, triton-attn,,sagan ", "--plugins") == ("sagan", "triton-attn")
    assert parse_digits("7,8") == (7, 8)
    assert parse_digits("all") == ()
    with pytest.raises(ConfigError):
        parse_names(" , ", "--plugins")
    with pytest.raises(ConfigError):
        parse_digits("seven")


def test_resolve_fills_cpu_defaults():
    cfg = resolve(RunConfig(plugins=("dcgan",), device="cpu"))
    assert (cfg.device, cfg.steps, cfg.image_size) == ("cpu", 600, 32)
    assert cfg.warmup == 10


def test_cuda_request_without_cuda_is_a_user_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="no CUDA device"):
        resolve(RunConfig(plugins=("dcgan",), device="cuda"))


def test_round_trip_through_dict():
    cfg = RunConfig(plugins=("sagan", "hinge"), digits=(3,), metrics=())
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path):
    from ganbench.config import native_bf16_cpu

    with_bf16 = tmp_path / "a"
    with_bf16.write_text("processor : 0\nflags : fpu sse2 avx2 avx512f avx512_bf16 avx_vnni\n")
    without = tmp_path / "b"
    without.write_text("processor : 0\nflags : fpu sse2 avx2 avx512f avx512bw\n")
    assert native_bf16_cpu(str(with_bf16)) is True
    assert native_bf16_cpu(str(without)) is False
    assert native_bf16_cpu(str(tmp_path / "missing")) is False


def test_dtype_auto_resolves_to_fp32_on_cuda_and_per_cpu(monkeypatch):
    import ganbench.config as config

    assert config.auto_dtype("cuda") == "fp32" and config.auto_dtype("cuda:1") == "fp32"
    monkeypatch.setattr(config, "native_bf16_cpu", lambda: True)
    assert config.auto_dtype("cpu") == "bf16"
    monkeypatch.setattr(config, "native_bf16_cpu", lambda: False)
    assert config.auto_dtype("cpu") == "fp32"
    cfg = config.resolve(config.RunConfig(plugins=("dcgan",), device="cpu"))
    assert cfg.dtype == "fp32"  # what ran is recorded, never "auto"


def test_bad_memory_format_is_refused():
    import pytest

    from ganbench.config import RunConfig
    from ganbench.errors import ConfigError

    with pytest.raises(ConfigError, match="--memory-format must be one of"):
        RunConfig(plugins=("dcgan",), memory_format="nhwc")


def test_world_size_is_recorded_and_validated():
    import pytest

    from ganbench.config import RunConfig
    from ganbench.errors import ConfigError

    cfg = RunConfig(plugins=("dcgan",), world_size=2)
    assert RunConfig.from_dict(cfg.to_dict()).world_size == 2
    old = {k: v for k, v in cfg.to_dict().items() if k != "world_size"}  # an older config.json
    assert RunConfig.from_dict(old).world_size == 1
    with pytest.raises(ConfigError, match="world_size must be a positive integer"):
        RunConfig(plugins=("dcgan",), world_size=0)



@pytest.mark.parametrize("kwargs, fragment", [
    ({"baseline": "book"}, "--baseline must be one of textbook, got 'book'"),
    ({"compile_mode": "fast"}, "--compile-mode must be one of default, reduce-overhead"),
    ({"compile": "all"}, "--compile must be one of models, step (or absent), got 'all'"),
    ({"malloc": "jemalloc"}, "--malloc must be one of default, keep, got 'jemalloc'"),
    ({"checkpoint_every": -1}, "--checkpoint-every must be >= 0"),
])
def test_choices_and_limits_come_from_the_config_tuples(kwargs, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        RunConfig(plugins=("dcgan",), **kwargs)


def test_compile_true_and_old_config_files_mean_models():
    """--compile alone, RunConfig(compile=True) and config.json files written before
    'step' existed (a bool) all mean G and D compiled."""
    assert RunConfig(plugins=("dcgan",), compile=True).compile == "models"
    assert RunConfig(plugins=("dcgan",)).compile == "off"
    assert not RunConfig(plugins=("dcgan",)).compiled
    old = RunConfig(plugins=("dcgan",)).to_dict()
    old["compile"] = True
    old.pop("malloc")  # runs made before --malloc
    cfg = RunConfig.from_dict(old)
    assert (cfg.compile, cfg.compiled, cfg.malloc) == ("models", True, "default")


@pytest.mark.parametrize("steps, warmup", [(600, 10), (30, 6), (4, 0), (1000, 10)])
def test_warmup_default_is_min_of_the_cap_and_a_fifth(steps, warmup):
    cfg = resolve(RunConfig(plugins=("dcgan",), device="cpu", steps=steps))
    assert cfg.warmup == warmup  # min(10, steps // 5), by hand


def test_default_eval_n_is_one_number_for_config_and_quality():
    from ganbench.config import DEFAULT_EVAL_N
    from ganbench.quality import evaluate

    assert DEFAULT_EVAL_N == 2000 and evaluate.DEFAULT_EVAL_N is DEFAULT_EVAL_N

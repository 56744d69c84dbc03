"""The built-in targets/profiles (``targets/*.yaml``, ``profiles/*.yaml``) and the catalog loader.

The first half checks that the shipped data is consistent with itself: names, aliases, the
profile each target defaults to, and that every format a target accepts can be both produced
(by some profile) and run (by one of the target's runtimes). The second half drives
``load_catalog`` with user folders under ``tmp_path``: additions, overrides, and bad files
reported with the file and the field.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from edgepack.config.catalog import builtin_dir, load_catalog
from edgepack.errors import ConfigError, UsageError

REQUIRED_TARGETS = {
    "raspberrypi4", "raspberrypi5", "jetson-orin-nano", "android-arm64", "android-gpu",
    "coral-edgetpu", "intel-cpu", "intel-gpu", "x86-host",
}
REQUIRED_PROFILES = {"int8-arm", "fp16-gpu", "int8-openvino", "int8-edgetpu", "dynamic-int8",
                     "fp32"}


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def _runtime_formats(name: str) -> set[str]:
    """Formats a runtime named in a target can run: the adapter's own list where edgepack has
    an adapter; TensorRT (no adapter, it only runs on the device) parses ONNX."""
    if name == "tensorrt":
        return {"onnx"}
    from edgepack.runtimes import get_runtime
    return set(get_runtime(name).formats)


# ---------------------------------------------------------------- the built-in data

def test_builtin_catalog_has_the_required_targets_and_profiles(catalog):
    assert REQUIRED_TARGETS <= set(catalog.targets.names())
    assert REQUIRED_PROFILES <= set(catalog.profiles.names())


@pytest.mark.parametrize("kind", ["targets", "profiles"])
def test_each_builtin_file_is_named_after_its_item(catalog, kind):
    registry = catalog.targets if kind == "targets" else catalog.profiles
    files = sorted(p.name for p in builtin_dir(kind).glob("*.y*ml"))
    assert files == sorted(f"{n}.yaml" for n in registry.names())
    for name in registry.names():
        assert registry.entry(name).source.name == f"{name}.yaml"


@pytest.mark.parametrize("alias,name", [
    ("raspberrypi", "raspberrypi4"), ("rpi4", "raspberrypi4"), ("rpi5", "raspberrypi5"),
])
def test_aliases_resolve(catalog, alias, name):
    assert catalog.targets.get(alias).name == name


def test_aliases_never_shadow_a_name(catalog):
    # an alias equal to another target's name would make that target unreachable
    assert not set(catalog.targets.aliases) & set(catalog.targets.entries)


def test_default_profile_produces_a_format_the_target_accepts(catalog):
    for name in catalog.targets.names():
        target = catalog.targets.get(name)
        profile = catalog.profile_for(target)
        assert set(profile.formats) & set(target.formats), \
            f"{name}: default profile {profile.name} makes {profile.formats}, " \
            f"target accepts {target.formats}"


def test_every_accepted_format_is_producible_by_some_profile(catalog):
    producible = {f for n in catalog.profiles.names() for f in catalog.profiles.get(n).formats}
    for name in catalog.targets.names():
        missing = set(catalog.targets.get(name).formats) - producible
        assert not missing, f"{name} accepts {missing}, which no profile produces"


def test_every_accepted_format_has_a_runtime_on_the_target(catalog):
    for name in catalog.targets.names():
        target = catalog.targets.get(name)
        runnable = set().union(*(_runtime_formats(r.name) for r in target.runtimes))
        missing = set(target.formats) - runnable
        assert not missing, f"{name} accepts {missing} but none of its runtimes runs them"


def test_every_runtime_of_a_target_runs_one_of_its_formats(catalog):
    for name in catalog.targets.names():
        target = catalog.targets.get(name)
        for rt in target.runtimes:
            assert _runtime_formats(rt.name) & set(target.formats), \
                f"{name}: runtime {rt.name} runs none of {target.formats}"


def test_runtime_names_are_unique_per_target(catalog):
    for name in catalog.targets.names():
        names = [r.name for r in catalog.targets.get(name).runtimes]
        assert len(names) == len(set(names)), f"{name}: {names}"


def test_limits_are_consistent(catalog):
    for name in catalog.targets.names():
        limits = catalog.targets.get(name).limits
        assert limits.max_model_mb <= limits.memory_mb, name
        assert limits.max_model_mb <= limits.storage_mb, name


def test_int8_io_targets_default_to_integer_io(catalog):
    """A target that wants int8/uint8 model I/O must not default to a float-I/O recipe."""
    checked = 0
    for name in catalog.targets.names():
        target = catalog.targets.get(name)
        if target.constraints.int8_io:
            profile = catalog.profile_for(target)
            assert profile.precision == "int8" and profile.quantization is not None, name
            assert profile.quantization.io_dtype in ("int8", "uint8"), name
            checked += 1
    assert checked >= 1  # coral-edgetpu at least


def test_gpu_and_edgetpu_targets_need_static_shapes(catalog):
    for name in ("android-arm64", "android-gpu", "coral-edgetpu"):
        assert catalog.targets.get(name).constraints.static_shapes, name
    assert not catalog.targets.get("x86-host").constraints.static_shapes


def test_legacy_pi_runtime_is_tflite_runtime_2_14(catalog):
    litert = catalog.targets.get("raspberrypi4").runtime("litert")
    assert litert is not None
    assert litert.version == "2.14"
    assert litert.packages[0] == "tflite-runtime"


def test_fallbacks_need_no_calibration_and_cover_the_formats(catalog):
    """Falling back must not need data again, nor lose a format the recipe could produce."""
    for name in catalog.profiles.names():
        profile = catalog.profiles.get(name)
        if profile.fallback_without_calibration is None:
            continue
        fallback = catalog.profiles.get(profile.fallback_without_calibration)
        assert not fallback.needs_calibration, name
        assert set(profile.formats) <= set(fallback.formats), name


def test_edgetpu_recipe_has_no_float_fallback(catalog):
    profile = catalog.profiles.get("int8-edgetpu")
    assert profile.fallback_without_calibration is None
    assert profile.quantization.io_dtype in ("int8", "uint8")
    assert profile.formats == ["tflite"]


def test_every_profile_has_a_label_free_budget(catalog):
    """Agreement and cosine need no labels, so every recipe can always be checked."""
    for name in catalog.profiles.names():
        budget = catalog.profiles.get(name).budget
        assert budget.min_top1_agreement is not None, name
        assert budget.min_cosine is not None, name


def test_budgets_loosen_with_compression(catalog):
    def cos(n):
        return catalog.profiles.get(n).budget.min_cosine
    assert cos("fp32") > cos("fp16-gpu") > cos("int8-arm") >= cos("dynamic-int8")


# ---------------------------------------------------------------- the loader, on user folders

GOOD_TARGET = {
    "name": "my-board",
    "aliases": ["myb"],
    "title": "My board",
    "device": {"vendor": "Acme", "cpu": "4x Cortex-A55", "cores": 4},
    "arch": "aarch64",
    "runtimes": [{"name": "litert", "version": "2.14", "packages": ["tflite-runtime"]}],
    "formats": ["tflite"],
    "default_profile": "int8-arm",
    "limits": {"memory_mb": 2048, "storage_mb": 16000, "max_model_mb": 256},
}

GOOD_PROFILE = {
    "name": "my-int8",
    "title": "My int8",
    "precision": "int8",
    "formats": ["tflite"],
    "quantization": {"per_channel": True, "calibration": {"samples": 50}},
    "fallback_without_calibration": "dynamic-int8",
}


def _write(folder: Path, filename: str, data) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def test_user_folder_adds_a_target(tmp_path):
    _write(tmp_path / "targets", "my-board.yaml", GOOD_TARGET)
    cat = load_catalog(targets_dirs=[tmp_path / "targets"])
    assert cat.targets.get("my-board").device.vendor == "Acme"
    assert cat.targets.get("myb").name == "my-board"
    assert cat.targets.entry("my-board").source == tmp_path / "targets" / "my-board.yaml"
    assert REQUIRED_TARGETS <= set(cat.targets.names())  # built-ins are still there


def test_user_folder_overrides_a_builtin_by_name(tmp_path):
    data = copy.deepcopy(GOOD_TARGET)
    data.update(name="raspberrypi4", aliases=[], title="Our measured Pi 4")
    _write(tmp_path / "targets", "pi.yaml", data)
    cat = load_catalog(targets_dirs=[tmp_path / "targets"])
    assert cat.targets.get("raspberrypi4").title == "Our measured Pi 4"
    assert cat.targets.get("raspberrypi").title == "Our measured Pi 4"  # built-in alias kept


def test_user_folder_adds_a_profile_a_user_target_can_use(tmp_path):
    _write(tmp_path / "profiles", "my-int8.yaml", GOOD_PROFILE)
    target = dict(GOOD_TARGET, default_profile="my-int8")
    _write(tmp_path / "targets", "my-board.yaml", target)
    cat = load_catalog(targets_dirs=[tmp_path / "targets"],
                       profiles_dirs=[tmp_path / "profiles"])
    board = cat.targets.get("my-board")
    assert cat.profile_for(board).quantization.calibration.samples == 50


def _bad_target(mutate) -> dict:
    data = copy.deepcopy(GOOD_TARGET)
    mutate(data)
    return data


@pytest.mark.parametrize("data,field", [
    pytest.param(_bad_target(lambda d: d.update(colour="red")), "colour", id="unknown-key"),
    pytest.param(_bad_target(lambda d: d["device"].update(cores="many")), "device.cores",
                 id="wrong-type"),
    pytest.param(_bad_target(lambda d: d.pop("title")), "title", id="missing-field"),
    pytest.param(_bad_target(lambda d: d["runtimes"][0].update(version="2.14.0-rc1")),
                 "runtimes.0.version", id="bad-version"),
    pytest.param(_bad_target(lambda d: d.update(formats=["tflite", "coreml"])), "formats",
                 id="unknown-format"),
    pytest.param(_bad_target(lambda d: d.update(runtimes=[])), "runtimes", id="no-runtime"),
])
def test_bad_target_file_names_the_file_and_the_field(tmp_path, data, field):
    _write(tmp_path / "targets", "broken-board.yaml", data)
    with pytest.raises(ConfigError) as info:
        load_catalog(targets_dirs=[tmp_path / "targets"])
    message = str(info.value)
    assert "broken-board.yaml" in message
    assert field in message


def test_invalid_yaml_names_the_file_and_the_line(tmp_path):
    _write(tmp_path / "targets", "garbled.yaml", "name: x\ndevice: [unclosed\ntitle: y\n")
    with pytest.raises(ConfigError) as info:
        load_catalog(targets_dirs=[tmp_path / "targets"])
    assert "garbled.yaml" in str(info.value)
    assert "line " in str(info.value)


def test_a_yaml_file_that_is_not_a_mapping_is_rejected(tmp_path):
    _write(tmp_path / "targets", "list.yaml", "- just\n- a list\n")
    with pytest.raises(ConfigError, match="list.yaml"):
        load_catalog(targets_dirs=[tmp_path / "targets"])


def test_bad_profile_file_names_the_file_and_the_field(tmp_path):
    data = dict(GOOD_PROFILE)
    data.pop("quantization")  # int8 without a quantization section
    _write(tmp_path / "profiles", "my-int8.yaml", data)
    with pytest.raises(ConfigError) as info:
        load_catalog(profiles_dirs=[tmp_path / "profiles"])
    assert "my-int8.yaml" in str(info.value)
    assert "quantization" in str(info.value)


def test_unknown_default_profile_names_the_file_and_the_field(tmp_path):
    _write(tmp_path / "targets", "my-board.yaml", dict(GOOD_TARGET, default_profile="int9-arm"))
    with pytest.raises(ConfigError) as info:
        load_catalog(targets_dirs=[tmp_path / "targets"])
    message = str(info.value)
    assert "my-board.yaml" in message
    assert "default_profile" in message
    assert "int9-arm" in message


def test_unknown_fallback_profile_names_the_file_and_the_field(tmp_path):
    _write(tmp_path / "profiles", "my-int8.yaml",
           dict(GOOD_PROFILE, fallback_without_calibration="dynamic-int4"))
    with pytest.raises(ConfigError) as info:
        load_catalog(profiles_dirs=[tmp_path / "profiles"])
    assert "my-int8.yaml" in str(info.value)
    assert "fallback_without_calibration" in str(info.value)


def test_two_files_with_one_name_in_a_folder_are_rejected(tmp_path):
    _write(tmp_path / "targets", "a.yaml", GOOD_TARGET)
    _write(tmp_path / "targets", "b.yaml", dict(GOOD_TARGET, aliases=[]))
    with pytest.raises(ConfigError, match="my-board"):
        load_catalog(targets_dirs=[tmp_path / "targets"])


def test_missing_user_folder_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="nowhere"):
        load_catalog(targets_dirs=[tmp_path / "nowhere"])


def test_unknown_target_suggests_the_closest_name(catalog):
    with pytest.raises(UsageError) as info:
        catalog.targets.get("raspbery")
    assert not isinstance(info.value, ConfigError)  # a usage mistake, not a bad file
    assert "raspbery" in str(info.value)
    assert "did you mean" in str(info.value)
    assert "raspberrypi" in info.value.hint


def test_unknown_target_without_a_close_name_lists_the_known_ones(catalog):
    with pytest.raises(UsageError) as info:
        catalog.targets.get("zzzzzz")
    assert "known targets" in info.value.hint
    assert "x86-host" in info.value.hint


def test_unknown_profile_suggests_the_closest_name(catalog):
    with pytest.raises(UsageError) as info:
        catalog.profiles.get("int8-amr")
    assert "int8-arm" in info.value.hint

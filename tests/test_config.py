import subprocess
import sys

import pytest
import yaml

from toolchain.config import Config, ConfigError, DEFAULT_CONFIG, load_config, to_dict


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_default_file_documents_the_embedded_defaults():
    assert to_dict(load_config(DEFAULT_CONFIG)) == to_dict(Config())


def test_default_file_is_the_generated_template():
    """config/default.yaml is made from the schema (toolchain.config.template): every key, its
    default and its help line; regenerate it after a schema change."""
    from toolchain.config import template
    text = DEFAULT_CONFIG.read_text()
    header = "".join(text.splitlines(keepends=True)[:3])
    assert text == header + template() + "\n"


def test_every_default_key_is_in_the_default_file():
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())

    def keys(d, prefix=""):
        for k, v in d.items():
            yield from keys(v, f"{prefix}{k}.") if isinstance(v, dict) and v else [prefix + k]
    assert set(keys(raw)) == set(keys(to_dict(Config())))


@pytest.mark.parametrize("text,key", [
    ("trian: {epochs: 3}", "trian"),
    ("train: {epoch: 3}", "train.epoch"),
    ("train: {optimizer: {nmae: adam}}", "train.optimizer.nmae"),
])
def test_unknown_keys_are_rejected_with_their_dotted_name(tmp_path, text, key):
    with pytest.raises(ConfigError, match=f"unknown config key '{key}'"):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize("text,key,why", [
    ("train: {epochs: three}", "train.epochs", "expected an integer"),
    ("train: {epochs: 2.5}", "train.epochs", "expected an integer"),
    ("train: {epochs: true}", "train.epochs", "expected an integer"),
    ("train: {augment: {hflip: 1}}", "train.augment.hflip", "expected true/false"),
    ("train: {mix: {photos: 0.8, no_hand: 0.3}}", "train.mix.photos", "more than the whole batch"),
    ("train: {augment: {scale: [1.3, 0.8]}}", "train.augment.scale", "low <= high"),
    ("data: {photos: data/asl_photos}", "data.photos", "expected list of string"),
    ("model: {input_size: 4}", "model.input_size", "below the minimum"),
    ("recognition: {threshold: 1.5}", "recognition.threshold", "above the maximum"),
    ("train: {batch_size: 0}", "train.batch_size", "below the minimum"),
    ("train: {optimizer: {name: adamw}}", "train.optimizer.name", "not one of"),
    ("train: {lr_schedule: {policy: cosine}}", "train.lr_schedule.policy", "not one of"),
    ("model: {widths: 32}", "model.widths", "expected list of integer"),
    ("model: {widths: [16, 5000]}", "model.widths", "DPU limit"),
    ("model: {kernel_size: 17}", "model.kernel_size", "above the maximum"),
    ("data: {val_fraction: 'ten percent'}", "data.val_fraction", "expected a number"),
    ("train: {lr_schedule: {decay: 0.1}}", "train.lr_schedule.decay", "only applies to policy time_decay"),
    ("train: {optimizer: {nesterov: true}}", "train.optimizer.nesterov", "only applies to the sgd"),
    ("train: {metrics: [accuracy, f1]}", "train.metrics[1]", "not one of"),
    ("train: {optimizer: adam}", "train.optimizer", "expected a mapping"),
])
def test_wrong_types_and_values_name_the_key(tmp_path, text, key, why):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    assert f"'{key}'" in str(e.value) and why in str(e.value)


def test_overrides_are_typed_and_validated(tmp_path):
    cfg = load_config(None, ["train.epochs=3", "model.widths=[8, 16]", "data.train_limit=100"])
    assert cfg.train.epochs == 3 and cfg.model.widths == [8, 16] and cfg.data.train_limit == 100
    with pytest.raises(ConfigError, match="'train.epochs'"):
        load_config(None, ["train.epochs=x"])
    with pytest.raises(ConfigError, match="unknown config key 'train.nope'"):
        load_config(None, ["train.nope=1"])
    with pytest.raises(ConfigError, match="must look like"):
        load_config(None, ["train.epochs"])


def test_exponent_floats_and_hex_fingerprints_read_as_meant(tmp_path):
    # YAML 1.1 reads 1e-3 (no dot) as a string and 0x... as an int
    cfg = load_config(write(tmp_path, "train: {lr_schedule: {lr: 1e-3}}\n"
                                      "compile: {board: custom, fingerprint: 0x101000056010407}"))
    assert cfg.train.lr_schedule.lr == 0.001
    assert cfg.compile.fingerprint == "0x101000056010407"
    assert load_config(None, ["lr_find.start_lr=1e-7"]).lr_find.start_lr == 1e-7


def test_cosmetic_keys_do_not_make_outputs_stale():
    from toolchain.config import config_hash
    a = load_config(None, [])
    b = load_config(None, ["train.progress=none", "train.threads=1", "runner=host"])
    c = load_config(None, ["train.epochs=3"])
    assert config_hash(a, "train") == config_hash(b, "train") != config_hash(c, "train")


def test_duplicate_keys_and_non_utf8_files(tmp_path):
    with pytest.raises(ConfigError, match="key 'epochs' is given twice"):
        load_config(write(tmp_path, "train:\n  epochs: 3\n  epochs: 4\n"))
    p = tmp_path / "latin1.yaml"
    p.write_bytes("# caf\xe9\ntrain: {epochs: 3}\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_config(p)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a folder: pass the YAML file in it"):
        load_config(tmp_path)
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "train: {epochs: [1"))
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"))


def test_cli_reports_a_config_error_in_one_line(tmp_path, repo_root):
    bad = write(tmp_path, "train: {epochz: 3}")
    r = subprocess.run([sys.executable, "-m", "toolchain", "train", "--config", str(bad),
                        "--build-dir", str(tmp_path / "b")], cwd=repo_root,
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0, r.stderr
    assert r.stderr.startswith("error: unknown config key 'train.epochz'")
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "b" / "train").exists()

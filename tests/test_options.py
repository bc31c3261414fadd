"""The command line and environment contract of `python -m app`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.options import FLAGS, DashboardConfig, OptionError, SidecarConfig, app_name_from_pod, parse
from tests.conftest import ROOT, app_env


def test_sidecar_defaults() -> None:
    config = parse(["--mode", "sidecar"], {"POD_NAME": "j-slow-9-5rt8f"})
    assert isinstance(config, SidecarConfig)
    assert (config.port, config.target_host, config.target_port, config.admin_port) == (8080, "127.0.0.1", 8087, 9901)
    assert config.dashboard == ""
    assert (config.stats_interval, config.resources_interval) == (5.0, 1.0)
    assert (config.pod, config.app_name) == ("j-slow-9-5rt8f", "j-slow")


def test_environment_and_flag_precedence() -> None:
    env = {"PORT": "9000", "TARGET_PORT": "9001", "DASHBOARD": "http://dash:8080/", "DASHBOARD_TOKEN": "s3"}
    config = parse(["--mode", "sidecar", "--port", "9100"], env)
    assert isinstance(config, SidecarConfig)
    assert config.port == 9100  # the flag wins
    assert config.target_port == 9001
    assert config.dashboard == "http://dash:8080"  # trailing slash dropped: no //stats
    assert config.token == "s3"


def test_the_namespace_comes_from_the_downward_api_variable_and_must_be_a_kubernetes_name() -> None:
    config = parse(["--mode", "sidecar"], {"POD_NAMESPACE": "shop-prod"})
    assert isinstance(config, SidecarConfig) and config.namespace == "shop-prod"
    config = parse(["--mode", "sidecar"], {})
    assert isinstance(config, SidecarConfig) and config.namespace == ""  # not in a pod: not reported
    for bad in ("Shop", "shop_prod", "-shop", "x" * 64):
        with pytest.raises(OptionError, match="POD_NAMESPACE"):
            parse(["--mode", "sidecar"], {"POD_NAMESPACE": bad})


def test_protocol_is_detected_unless_forced() -> None:
    config = parse(["--mode", "sidecar"], {})
    assert isinstance(config, SidecarConfig) and (config.protocol, config.detect_timeout) == ("auto", 10.0)
    config = parse(["--mode", "sidecar", "--detect-timeout", "0.5"], {"PROTOCOL": "HTTP2"})
    assert isinstance(config, SidecarConfig) and (config.protocol, config.detect_timeout) == ("http2", 0.5)


def test_mothership_variable_is_read_for_the_dashboard_url() -> None:
    config = parse(["--mode", "sidecar"], {"MOTHERSHIP": "http://m:80"})
    assert isinstance(config, SidecarConfig) and config.dashboard == "http://m:80"


def test_mode_from_environment() -> None:
    config = parse([], {"MODE": "dashboard", "DATA_PATH": ":memory:", "RETENTION": "2h"})
    assert isinstance(config, DashboardConfig)
    assert config.data == ":memory:" and config.retention == 7200


@pytest.mark.parametrize(
    ("argv", "env", "names"),
    [
        (["--mode", "sidecar", "--port", "70000"], {}, "--port"),
        (["--mode", "sidecar", "--port", "abc"], {}, "--port"),
        (["--mode", "sidecar"], {"TARGET_PORT": "-1"}, "TARGET_PORT"),
        (["--mode", "sidecar", "--dashboard", "dash:8080"], {}, "--dashboard"),
        (["--mode", "sidecar", "--stats-interval", "0"], {}, "--stats-interval"),
        (["--mode", "sidecar", "--stats-interval", "nan"], {}, "--stats-interval"),
        (["--mode", "dashboard", "--retention", "forever"], {}, "--retention"),
        (["--mode", "dashboard", "--target-port", "1"], {}, "--target-port"),
        (["--mode", "sidecar", "--protocol", "http3"], {}, "--protocol"),
        (["--mode", "sidecar"], {"PROTOCOL": "grpc"}, "PROTOCOL"),
        (["--mode", "sidecar", "--detect-timeout", "0"], {}, "--detect-timeout"),
        (["--mode", "nope"], {}, "--mode"),
        ([], {}, "--mode"),
    ],
)
def test_bad_values_name_the_flag(argv: list[str], env: dict[str, str], names: str) -> None:
    with pytest.raises(OptionError, match=names):
        parse(argv, env)


def test_bad_value_exits_2_with_one_line() -> None:
    result = subprocess.run([sys.executable, "-m", "app", "--mode", "sidecar", "--port", "x"],
                            cwd=ROOT, env=app_env(), capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--port" in lines[0], result.stderr


@pytest.mark.parametrize(("pod", "app"), [("j-slow-9-5rt8f", "j-slow"), ("web-7d4b9c-x2x", "web"),
                                          ("solo", "solo"), ("a-b", "a-b")])
def test_app_name_from_pod(pod: str, app: str) -> None:
    assert app_name_from_pod(pod) == app


@pytest.mark.parametrize(("url", "shown"), [
    ("http://dash:8080", "http://dash:8080"),
    ("http://user:s3cret@dash:8080/base", "http://user:***@dash:8080/base"),
    ("https://u:p@w@d", "https://u:***@d"),
])
def test_display_url_hides_passwords(url: str, shown: str) -> None:
    from app.options import display_url

    assert display_url(url) == shown


def test_inject_flags_defaults_and_files() -> None:
    from app import __version__
    from app.options import InjectConfig

    config = parse(["inject", "a.yaml", "--target-port", "http", "b.yaml", "--uninject"], {})
    assert isinstance(config, InjectConfig)
    assert config.files == ("a.yaml", "b.yaml")
    assert (config.target_port, config.uninject, config.share_process_namespace) == ("http", True, False)
    assert config.image == f"mothership:{__version__}"
    assert config.dashboard == "http://mothership:8080"
    assert config.token_secret == ("mothership-tokens", "ingest-token")
    config = parse(["--mode", "inject", "--target-port", "8087", "--token-secret", "", "--share-process-namespace"],
                   {"INJECT_IMAGE": "quay.io/me/ms:1", "TARGET_PORT": "1", "DASHBOARD": "http://not-read:1"})
    assert isinstance(config, InjectConfig)
    assert (config.target_port, config.token_secret, config.share_process_namespace) == (8087, None, True)
    assert config.image == "quay.io/me/ms:1"  # INJECT_* only: a sidecar's own settings never leak in
    assert config.dashboard == "http://mothership:8080"


def test_file_arguments_belong_to_inject_only() -> None:
    with pytest.raises(OptionError, match=r"x\.yaml: sidecar mode takes no file arguments"):
        parse(["--mode", "sidecar", "x.yaml"], {})


def test_help_lists_every_mode_and_flag() -> None:
    proc = subprocess.run([sys.executable, "-m", "app", "--help"], cwd=ROOT, env=app_env(), capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "sidecar|dashboard|demo|inject" in proc.stdout
    for flags in FLAGS.values():
        for flag in flags:
            assert flag.flag in proc.stdout

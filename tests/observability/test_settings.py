"""The flags of this issue: alert thresholds, --otel (or OTEL_EXPORTER_OTLP_ENDPOINT) and
--log-format, each with its environment variable."""

from __future__ import annotations

import argparse

import pytest

from gateway.cli.main import build_parser
from gateway.config import add_arguments, settings_from


def parse(*argv: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return settings_from(parser.parse_args(list(argv)), env or {})


def test_alert_thresholds_and_otel_come_from_flags_or_the_environment() -> None:
    default = parse()
    assert (default.alert_outbox_percent, default.alert_projector_lag_seconds,
            default.alert_interval, default.otel) == (80.0, 300.0, 30.0, False)
    flags = parse("--alert-outbox-percent", "50", "--alert-projector-lag-seconds", "60",
                  "--alert-interval", "5", "--otel")
    assert (flags.alert_outbox_percent, flags.alert_projector_lag_seconds,
            flags.alert_interval, flags.otel) == (50.0, 60.0, 5.0, True)
    assert parse(env={"GATEWAY_ALERT_OUTBOX_PERCENT": "90"}).alert_outbox_percent == 90.0
    assert parse(env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}).otel
    assert parse(env={"GATEWAY_OTEL": "true"}).otel


def test_a_threshold_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="alert_outbox_percent"):
        parse("--alert-outbox-percent", "150")


def test_log_format_is_text_or_json() -> None:
    parser, _ = build_parser()
    assert parser.parse_args(["--log-format", "json", "serve"]).log_format == "json"
    assert parser.parse_args(["serve"]).log_format == "text"
    with pytest.raises(SystemExit):
        parser.parse_args(["--log-format", "xml", "serve"])

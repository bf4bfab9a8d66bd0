"""One source of truth for the crawl's settings: gencomp.config.ScrapeParams.

params.yaml's scrape section, `gencomp scrape`, `python -m scraper.crawl`, the flow (`dvc repro`) and the Scrapy
settings module must all produce the same crawl for the same site; bad values fail at load, naming the key.
"""

from __future__ import annotations

import inspect

import pytest
import yaml
from typer.testing import CliRunner

from gencomp.config import ParamsError, ScrapeParams, load_params
from tests.conftest import REPO

URL = "https://example.com/gallery/"

# The Scrapy settings every user-facing value ends in.
COMPARED = [
    "USER_AGENT", "DOWNLOAD_DELAY", "AUTOTHROTTLE_START_DELAY", "DOWNLOAD_TIMEOUT", "DOWNLOAD_MAXSIZE",
    "RETRY_TIMES", "RETRY_ENABLED", "GENCOMP_RETRY_BACKOFF_BASE", "CONCURRENT_REQUESTS_PER_DOMAIN",
    "CONCURRENT_REQUESTS", "AUTOTHROTTLE_TARGET_CONCURRENCY", "GENCOMP_FORMATS", "GENCOMP_MAX_PIXELS",
    "GENCOMP_MIN_WIDTH", "GENCOMP_MIN_HEIGHT", "GENCOMP_WORKERS", "GENCOMP_MAX_IMAGES", "GENCOMP_ALLOW_PRIVATE",
    "GENCOMP_ALLOWED_NETWORKS", "TWISTED_DNS_RESOLVER", "HTTPPROXY_ENABLED",
]


def _scrapy_settings(argv: list[str], tmp_path) -> dict:
    from scraper.crawl import crawl_settings, make_parser

    assert argv[1:3] == ["-m", "scraper.crawl"], argv
    args = make_parser().parse_args(argv[3:])
    args.out = tmp_path
    settings = crawl_settings(args, "test-run")
    return {key: settings[key] for key in COMPARED} | {"depth": args.depth, "start_urls": args.start_urls,
                                                         "allowed_domains": args.allowed_domains}


def _cli_argv(monkeypatch, *args: str) -> list[str]:
    import gencomp.cli as cli

    captured: list[list[str]] = []
    monkeypatch.setattr(cli.subprocess, "call", lambda argv: captured.append(list(argv)) or 0)
    result = CliRunner().invoke(cli.app, ["scrape", *args])
    assert result.exit_code == 0, result.output
    (argv,) = captured
    return argv


def test_params_yaml_scrape_section_is_the_schema_defaults():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())["scrape"]
    assert set(raw) == set(ScrapeParams.model_fields), "params.yaml lists every scrape key, no other"
    assert load_params(REPO / "params.yaml").scrape == ScrapeParams()


def test_schema_formats_are_the_decoders_formats():
    from gencomp.data.images import DEFAULT_FORMATS

    assert set(ScrapeParams.IMAGE_FORMATS) == set(DEFAULT_FORMATS)


def test_scrapy_settings_module_uses_the_schema_defaults():
    import scraper.settings as s

    d = ScrapeParams()
    assert (s.USER_AGENT, s.DOWNLOAD_DELAY, s.DOWNLOAD_TIMEOUT, s.DOWNLOAD_MAXSIZE, s.RETRY_TIMES) == (
        d.user_agent, d.download_delay, d.timeout_s, d.max_bytes, d.retries)
    assert (s.CONCURRENT_REQUESTS_PER_DOMAIN, s.GENCOMP_MIN_WIDTH, s.GENCOMP_MIN_HEIGHT, s.GENCOMP_MAX_PIXELS) == (
        d.concurrency_per_domain, d.min_width, d.min_height, d.max_pixels)
    assert (s.GENCOMP_FORMATS, s.GENCOMP_WORKERS, s.GENCOMP_ALLOW_PRIVATE) == (
        d.formats, d.workers, d.allow_private_addresses)


def test_spider_default_depth_is_the_schema_default():
    from scraper.spiders.images import ImagesSpider

    default = inspect.signature(ImagesSpider.__init__).parameters["max_depth"].default
    assert default == ScrapeParams().depth
    assert ImagesSpider(start_urls=[URL]).max_depth == ScrapeParams().depth


def test_cli_defaults_and_help_come_from_the_schema():
    import typer

    from gencomp.cli import app

    command = typer.main.get_command(app).commands["scrape"]
    names = {"timeout": "timeout_s", "allow_private": "allow_private_addresses", "allowed_domain": "allowed_domains",
             "allow_network": "allowed_networks", "format": "formats"}
    checked = 0
    for param in command.params:
        field = names.get(param.name, param.name)
        if field not in ScrapeParams.model_fields or field == "demo_site":
            continue  # --demo-site is a switch: the schema's demo_site section holds the demo's settings
        info = ScrapeParams.model_fields[field]
        if not isinstance(info.default, list):
            assert param.default == info.default or str(param.default) == str(info.default), field
        assert (info.description or "")[:40] in (getattr(param, "help", None) or ""), field
        checked += 1
    assert checked >= 17


def test_cli_flow_and_bare_crawl_build_the_same_scrapy_settings(monkeypatch, tmp_path):
    from flows.scrape import crawl_command

    cli = _scrapy_settings(_cli_argv(monkeypatch, URL, "--out", str(tmp_path)), tmp_path)
    p = load_params(REPO / "params.yaml").scrape.model_copy(update={"start_urls": [URL], "out": str(tmp_path)})
    flow = _scrapy_settings(crawl_command(p), tmp_path)
    bare = _scrapy_settings(["python", "-m", "scraper.crawl", "--out", str(tmp_path), "--start-url", URL], tmp_path)
    assert cli == flow == bare
    d = ScrapeParams()
    assert cli["USER_AGENT"] == d.user_agent and cli["DOWNLOAD_DELAY"] == d.download_delay
    assert cli["DOWNLOAD_TIMEOUT"] == d.timeout_s and cli["depth"] == d.depth
    assert cli["GENCOMP_MIN_WIDTH"] == d.min_width and cli["GENCOMP_FORMATS"] == d.formats
    assert cli["TWISTED_DNS_RESOLVER"] == "scraper.netguard.GuardedResolver" and cli["HTTPPROXY_ENABLED"] is False


def test_cli_passes_its_options_through_the_schema(monkeypatch, tmp_path):
    argv = _cli_argv(monkeypatch, URL, "--out", str(tmp_path), "--depth", "1", "--allowed-domain", "cdn.example.com",
                     "--allow-network", "192.168.0.0/16", "--allow-private", "--format", "jpg", "--timeout", "5")
    s = _scrapy_settings(argv, tmp_path)
    assert s["depth"] == 1 and s["allowed_domains"] == ["cdn.example.com"] and s["GENCOMP_FORMATS"] == ["JPEG"]
    assert s["GENCOMP_ALLOW_PRIVATE"] is True and s["GENCOMP_ALLOWED_NETWORKS"] == ["192.168.0.0/16"]
    assert s["DOWNLOAD_TIMEOUT"] == 5.0


@pytest.mark.parametrize(
    "args, key",
    [
        (["http://"], "start_urls"),
        (["ftp://example.com/"], "start_urls"),
        ([URL, "--depth", "1000000000"], "depth"),
        ([URL, "--allowed-domain", "example.com/path"], "allowed_domains"),
        ([URL, "--allow-network", "10.0.0.0/33"], "allowed_networks"),
        ([URL, "--format", "JPGG"], "formats"),
        ([URL, "--timeout", "0"], "timeout_s"),
    ],
)
def test_cli_refuses_bad_values_naming_the_key(monkeypatch, tmp_path, args, key):
    import gencomp.cli as cli

    monkeypatch.setattr(cli.subprocess, "call", lambda argv: pytest.fail("the crawl must not start"))
    result = CliRunner().invoke(cli.app, ["scrape", *args, "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert key in result.output and "Traceback" not in result.output, result.output


@pytest.mark.parametrize(
    "flag, value",
    [("--start-url", "http://"), ("--redis-url", "http://127.0.0.1:6379/0"), ("--depth", "101"),
     ("--allowed-domain", "ftp://x.org"), ("--resolve", "host.test"), ("--format", "nope")],
)
def test_crawl_command_line_refuses_bad_values(tmp_path, flag, value):
    from scraper.crawl import make_parser

    with pytest.raises(SystemExit) as exc:
        make_parser().parse_args(["--out", str(tmp_path), "--start-url", URL, flag, value])
    assert exc.value.code == 2


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("redis_url", "http://127.0.0.1:6379/0", "redis://"),
        ("redis_url", "redis://", "no host"),
        ("start_urls", ["http://"], "no host"),
        ("start_urls", ["https://example.com:70000/"], "invalid port"),
        ("depth", 1_000_000_000, "less than or equal to 100"),
        ("allowed_networks", ["internal"], "CIDR"),
        ("formats", [], "at least 1"),
    ],
)
def test_params_yaml_errors_name_the_key(tmp_path, key, value, message):
    data = yaml.safe_load((REPO / "params.yaml").read_text())
    data["scrape"][key] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ParamsError, match=rf"scrape\.{key}: .*{message}"):
        load_params(tmp_path / "params.yaml")

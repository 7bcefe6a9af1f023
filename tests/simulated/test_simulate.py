"""`eggpool simulate run`: determinism, outcomes known in closed form, and bad scenarios."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from eggpool.simulated.scenario import ScenarioError, load_scenario, parse_scenario
from eggpool.simulated.simulate import Report, run_scenario


def pool(*tiers: tuple[str, int, int]) -> dict[str, Any]:
    """Providers (name, routing_priority, accounts) serving model `m`."""
    return {
        "server": {"api_key": "sk-server-0123456789"},
        "providers": {
            name: {
                "base_url": f"https://{name}.example/v1",
                "routing_priority": priority,
                "accounts": [
                    {"name": f"{name}-{n}", "api_key": f"sk-{name}-{n}-0123456789abcdef"}
                    for n in range(1, count + 1)
                ],
            }
            for name, priority, count in tiers
        },
    }


def scenario(
    providers: dict[str, Any], *, behaviour: dict[str, Any] | None = None, **traffic: Any
) -> dict[str, Any]:
    return {
        "pool": providers,
        "traffic": {
            "duration": 600,
            "rate": 2,
            "models": [{"name": "m"}],
            **traffic,
        },
        "behaviour": {"latency": 0.3, **(behaviour or {})},
    }


def run(document: dict[str, Any], seed: int = 1) -> Report:
    return run_scenario(parse_scenario(document, base_dir=Path(".")), seed=seed)


def shares(report: Report) -> dict[str, float]:
    return {name: a.requests / report.requests for name, a in report.accounts.items()}


def test_the_same_seed_gives_the_same_report_byte_for_byte() -> None:
    document = scenario(pool(("a", 0, 3)), behaviour={"rate_limit_rate": 0.05})
    first, again, other = run(document, 5), run(document, 5), run(document, 6)
    assert first.to_json() == again.to_json()
    assert first.to_json() != other.to_json()


def test_the_progress_bar_does_not_change_the_outcome() -> None:
    # A terminal shows progress, a pipe does not: the run must be the same either way.
    document = scenario(pool(("a", 0, 3)), behaviour={"rate_limit_rate": 0.05, "jitter": 0.5})
    seen: list[float] = []
    parsed = parse_scenario(document, base_dir=Path("."))
    shown = run_scenario(parsed, seed=1, progress=seen.append)
    assert shown.to_json() == run(document).to_json()
    assert seen == sorted(seen)
    assert len(seen) > 10


@pytest.mark.parametrize("anthropic_share", [0.0, 1.0], ids=["openai", "anthropic"])
def test_streams_get_their_first_token_at_the_latency_and_end_later(
    anthropic_share: float,
) -> None:
    # 400 tokens at 40 a second: the answer takes about ten seconds after its first token.
    behaviour = {"latency": 0.5, "tokens_per_second": 40}
    providers = pool(("a", 0, 1))
    providers["providers"]["a"]["protocols"] = ["anthropic" if anthropic_share else "openai"]
    document = scenario(
        providers, behaviour=behaviour, stream_share=1.0,
        anthropic_share=anthropic_share, output_tokens=400, duration=120,
    )  # fmt: skip
    report = run(document).as_json()
    assert report["outcomes"] == {"completed": report["requests"]}
    assert report["ttft_ms"]["p50"] == pytest.approx(500, abs=5)
    assert report["latency_ms"]["p50"] > 5_000


def test_equal_accounts_share_the_traffic_evenly() -> None:
    report = run(scenario(pool(("a", 0, 3))))
    assert report.requests > 1000
    assert report.outcomes == {"completed": report.requests}
    for share in shares(report).values():
        assert share == pytest.approx(1 / 3, abs=0.05)


def test_a_throttled_account_loses_its_share_and_clients_never_see_it() -> None:
    window = {"start": 100, "end": 500, "retry_after": 60}
    behaviour = {"accounts": {"a-1": {"throttled": [window]}}}
    report = run(scenario(pool(("a", 0, 2)), behaviour=behaviour))
    share = shares(report)
    assert share["a-1"] < 0.35 < share["a-2"]
    assert report.accounts["a-1"].rate_limited > 0
    assert report.accounts["a-1"].cooldowns > 0
    assert report.errors == {}  # every 429 failed over to a-2
    assert report.failovers > 0


def test_a_higher_tier_takes_all_traffic_until_it_cools_down() -> None:
    down = {"start": 200, "end": 400}
    behaviour = {"providers": {"gold": {"down": [down]}}}
    quiet = run(scenario(pool(("gold", 1, 1), ("iron", 0, 1))))
    assert shares(quiet) == {"gold-1": 1.0, "iron-1": 0.0}
    report = run(scenario(pool(("gold", 1, 1), ("iron", 0, 1)), behaviour=behaviour))
    # iron serves during the outage (a third of the run) and until gold's cooldown ends
    # and a probe finds it back; then gold takes the traffic again.
    assert 1 / 3 < shares(report)["iron-1"] < 0.8
    assert shares(report)["gold-1"] > 0.2
    assert report.accounts["gold-1"].cooldowns > 0
    assert report.errors == {}


def test_the_report_json_says_what_the_table_says() -> None:
    report = run(scenario(pool(("a", 0, 2))))
    data = json.loads(report.to_json())
    assert data["requests"] == report.requests
    assert set(data["accounts"]) == {"a-1", "a-2"}
    assert sum(a["requests"] for a in data["accounts"].values()) == report.requests
    a1 = data["accounts"]["a-1"]
    peak = a1["peak_spend_usd"]
    assert peak["five_hour"] == peak["weekly"] == peak["monthly"] == a1["spend_usd"]  # 10 min
    use = a1["peak_window_use"]
    assert use["five_hour"] == round(peak["five_hour"] / 12, 4)  # [limits]: $12 per 5 hours
    assert use["monthly"] == round(peak["monthly"] / 60, 4)
    table = report.table()
    assert "a-1" in table
    assert f"requests: {report.requests:,} in 600s (seed 1)" in table


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d["traffic"].update(rate=-1), "traffic.rate: must be greater than 0, got -1"),
        (lambda d: d["traffic"].update(models=[]), "traffic.models: name at least one model"),
        (
            lambda d: d["traffic"].update(arrival="bursty"),
            'traffic.arrival: expected one of "constant", "poisson"',
        ),
        (
            lambda d: d["pool"]["providers"]["a"].pop("base_url"),
            "pool.providers.a.base_url",
        ),
        (
            lambda d: d["behaviour"].update(accounts={"nobody": {}}),
            "behaviour.accounts.nobody: no such account in the pool",
        ),
        (
            lambda d: d["behaviour"].update(down=[{"start": 50, "end": 10}]),
            "behaviour.down[0].end: must be after start (50s), got 10s",
        ),
        (lambda d: d.pop("pool"), "pool: the pool to simulate"),
    ],
)
def test_a_bad_scenario_names_the_key_path(change: Any, problem: str) -> None:
    document = scenario(pool(("a", 0, 1)))
    change(document)
    with pytest.raises(ScenarioError) as raised:
        parse_scenario(document, base_dir=Path("."))
    assert any(str(p).startswith(problem) for p in raised.value.problems), raised.value


def test_the_command_prints_the_report_and_refuses_a_bad_file(tmp_path: Path) -> None:
    good = tmp_path / "scenario.toml"
    good.write_text(
        'seed = 3\npool = "pool.toml"\n\n[traffic]\nduration = "2m"\nrate = 1\n'
        '[[traffic.models]]\nname = "m"\n'
    )
    (tmp_path / "pool.toml").write_text(
        '[providers.a]\nbase_url = "https://a.example/v1"\n'
        '[[providers.a.accounts]]\nname = "a-1"\napi_key_env = "A_KEY"\n'
    )
    command = [sys.executable, "-m", "eggpool", "simulate", "run"]
    ran = subprocess.run(
        [*command, str(good), "--json"], capture_output=True, text=True, check=True
    )
    again = subprocess.run(
        [*command, str(good), "--json"], capture_output=True, text=True, check=True
    )
    assert ran.stdout == again.stdout
    assert json.loads(ran.stdout)["seed"] == 3
    bad = tmp_path / "bad.toml"
    bad.write_text('pool = "pool.toml"\n[traffic]\nrate = 0\nratee = 1\n')
    refused = subprocess.run([*command, str(bad)], capture_output=True, text=True, check=False)
    assert refused.returncode == 1
    assert "traffic.rate: must be greater than 0, got 0" in refused.stderr
    assert "traffic.models" in refused.stderr


def test_every_example_scenario_in_the_docs_is_valid() -> None:
    examples = sorted((Path(__file__).parents[2] / "docs" / "examples").glob("simulate-*.toml"))
    assert examples
    for path in examples:
        loaded = load_scenario(path)
        assert loaded.warnings == (), path


def test_a_pool_needs_no_credentials_but_other_variables_must_be_set() -> None:
    document = scenario(pool(("a", 0, 1)))
    account = document["pool"]["providers"]["a"]["accounts"][0]
    account["api_key_env"] = account.pop("api_key").replace("-", "_").upper() + "_KEY"
    assert run(document).requests > 0  # the key variable is unset: a placeholder stands in
    account["proxy_url_env"] = "EGGPOOL_TEST_UNSET_PROXY"
    with pytest.raises(ScenarioError, match=r"pool\.providers\.a\.accounts\[0\]\.proxy_url_env"):
        parse_scenario(document, base_dir=Path("."))


def test_constant_arrivals_follow_the_daily_curve_and_bursts() -> None:
    curve = [0.0, 2.0] + [1.0] * 22  # mean 1: hour 0 silent, hour 1 at twice the rate
    document = scenario(pool(("a", 0, 1)), duration=7200, rate=1, arrival="constant")
    document["traffic"]["daily_curve"] = curve
    assert run(document).requests == pytest.approx(7200, abs=2)
    burst = scenario(pool(("a", 0, 1)), duration=600, rate=1, arrival="constant")
    burst["traffic"]["bursts"] = [{"start": 100, "end": 200, "rate": 2}]
    assert run(burst).requests == pytest.approx(800, abs=2)


def test_long_sessions_stay_on_one_account() -> None:
    # One request every 20 s: a session's turns follow each other, as a person's do.
    quiet = {"duration": 7200, "rate": 0.05, "arrival": "constant"}
    spread = shares(run(scenario(pool(("a", 0, 3)), **quiet)))
    sticky = shares(run(scenario(pool(("a", 0, 3)), session_length=10_000, **quiet)))
    assert max(spread.values()) < 0.45
    assert max(sticky.values()) == 1.0  # one conversation: affinity keeps it in place


def test_an_account_past_its_spend_cap_hands_over() -> None:
    behaviour = {"accounts": {"a-1": {"spend_cap_usd": 0.01}}}
    report = run(scenario(pool(("a", 0, 2)), behaviour=behaviour))
    charges = report.accounts["a-1"].charges
    assert sum(cost for _, cost in charges) >= 10_000
    # It crossed the cap with the answers already under way when it did, no more: every
    # later charge lands within one request's time (seconds here) of the crossing.
    spent, crossed = 0, None
    for t, cost in charges:
        spent += cost
        if crossed is None and spent >= 10_000:
            crossed = t
    assert crossed is not None
    assert all(t - crossed < 15 for t, _ in charges)
    assert shares(report)["a-2"] > 0.9
    assert report.errors == {}


def test_cut_streams_reach_clients_as_upstream_errors() -> None:
    report = run(scenario(pool(("a", 0, 2)), behaviour={"cut_rate": 0.1}, stream_share=1.0))
    cut = report.outcomes["upstream_error"]
    assert cut == report.errors[502]  # recorded as the 502 a cut stream is
    assert 0.05 * report.requests < cut < 0.15 * report.requests


def test_a_withdrawn_model_moves_to_the_provider_still_serving_it() -> None:
    behaviour = {"providers": {"a": {"withdrawn": [{"model": "m", "start": 0}]}}}
    report = run(scenario(pool(("a", 1, 1), ("b", 0, 1)), behaviour=behaviour))
    assert shares(report) == {"a-1": 0.0, "b-1": 1.0}


def test_compare_prints_two_pools_side_by_side(tmp_path: Path) -> None:
    body = '[traffic]\nduration = "10m"\nrate = 1\n[[traffic.models]]\nname = "m"\n'
    one = '[providers.a]\nbase_url = "https://a.example/v1"\n'
    one += '[[providers.a.accounts]]\nname = "a-1"\napi_key = "sk-a-1-0123456789abcdef"\n'
    two = one + '[[providers.a.accounts]]\nname = "a-2"\napi_key = "sk-a-2-0123456789abcdef"\n'
    for name, pool_text in (("one", one), ("two", two)):
        (tmp_path / f"{name}.pool.toml").write_text(pool_text)
        (tmp_path / f"{name}.toml").write_text(f'pool = "{name}.pool.toml"\n' + body)
    command = [sys.executable, "-m", "eggpool", "simulate", "run", "--compare"]
    files = [str(tmp_path / "one.toml"), str(tmp_path / "two.toml")]
    shown = subprocess.run([*command, *files], capture_output=True, text=True, check=True)
    lines = shown.stdout.splitlines()
    assert lines[0].split() == ["one.toml", "two.toml"]
    a2 = next(line for line in lines if line.startswith("a-2"))
    assert a2.split()[1] == "-"  # the first pool has no a-2
    data = json.loads(
        subprocess.run(
            [*command, *files, "--json"], capture_output=True, text=True, check=True
        ).stdout
    )
    assert list(data) == files
    assert set(data[files[1]]["accounts"]) == {"a-1", "a-2"}
    assert data[files[0]]["requests"] == data[files[1]]["requests"]  # the same traffic


def test_the_html_report_holds_the_table_and_three_charts(tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    from eggpool.simulated.html import render_report

    window = {"start": 100, "end": 300, "retry_after": 60}
    document = scenario(
        pool(("a", 0, 2)), behaviour={"accounts": {"a-1": {"throttled": [window]}}}
    )
    loaded = parse_scenario(document, base_dir=Path("."))
    report = run_scenario(loaded, seed=1)
    page = render_report(report, loaded.config, "run <1>")
    assert "<title>run &lt;1&gt;</title>" in page
    assert page.count("<svg") == 3
    for chunk in page.split("<svg")[1:]:
        ET.fromstring("<svg" + chunk.split("</svg>")[0] + "</svg>")
    assert "<td>a-1</td>" in page
    assert report.cooldowns["a-1"]  # the throttled window shows on the timeline
    assert "<script" not in page

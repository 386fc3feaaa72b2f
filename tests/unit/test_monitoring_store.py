"""The SQL monitoring store on SQLite: typed columns, idempotent writes, merging halves, labels,
indicator results, retention."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from pushbutton.monitoring.records import InferenceRecord, Label
from pushbutton.monitoring.results import IndicatorResult
from pushbutton.monitoring.store import StoreError, StoreUnavailable, open_store, retention_cutoff
from pushbutton.monitoring.store.base import ROW_COLUMNS
from pushbutton.monitoring.store.sql import SqlStore, table_name

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
FEATURES = [("x", "double"), ("n", "long"), ("flag", "boolean"), ("city", "string")]


@pytest.fixture
def store(tmp_path) -> SqlStore:
    found = open_store(f"sqlite:///{tmp_path / 'monitoring.db'}")
    assert isinstance(found, SqlStore)
    found.ensure_model("shop", FEATURES, ("label", "long"))
    yield found
    found.close()


def record(
    request_id: str, at: datetime = T0, *, half: str = "both", version: str = "1", **kw
) -> InferenceRecord:
    """A logged request of model ``shop`` with two rows."""
    fields = dict(
        request_id=request_id, model="shop", predictor="champion", version=version, model_id="shop-v1"
    )
    if half in ("both", "request"):
        fields |= dict(
            request_event_id=f"{request_id}-q",
            request_time=at,
            names=("city", "x", "n", "flag"),  # another order than the schema's: matched by name
            inputs=[["Oslo", 1.5, 3, True], ["Rome", "oops", 4.5, "false"]],
            request_body='{"data": {}}',
        )
    if half in ("both", "response"):
        fields |= dict(
            response_event_id=f"{request_id}-p",
            response_time=at + timedelta(milliseconds=40),
            predictions=[1, 0],
            classes=("0", "1"),
            probabilities=[[0.25, 0.75], [0.5, 0.5]],
            status=200,
            response_body="{}",
        )
    if half == "both":
        fields["latency_ms"] = 40.0
    return InferenceRecord(**(fields | kw))


def window(store: SqlStore, **kw):
    return store.rows("shop", T0 - timedelta(hours=1), T0 + timedelta(hours=1), **kw)


def test_features_are_typed_columns(store: SqlStore):
    columns = {c["name"]: c["type"] for c in sa.inspect(store.engine).get_columns(table_name("shop"))}
    assert isinstance(columns["x"], sa.Float) and isinstance(columns["n"], sa.BigInteger)
    assert isinstance(columns["flag"], sa.Boolean) and isinstance(columns["city"], sa.Text)
    assert isinstance(columns["prediction"], sa.BigInteger)


def test_round_trip_to_a_typed_frame(store: SqlStore):
    result = store.write_records([record("r1")])
    assert (result.records, result.rows, result.untyped) == (1, 2, 0)
    frame = window(store)
    assert list(frame.columns[: len(ROW_COLUMNS)]) == list(ROW_COLUMNS)
    assert list(frame.columns[len(ROW_COLUMNS) :]) == [
        "x",
        "n",
        "flag",
        "city",
        "prediction",
        "proba_0",
        "proba_1",
    ]
    frame = frame.sort_values("row")
    assert str(frame["x"].dtype) == "float64" and str(frame["n"].dtype) == "Int64"
    assert str(frame["flag"].dtype) == "boolean" and frame["city"].tolist() == ["Oslo", "Rome"]
    assert frame["x"].iloc[0] == 1.5 and frame["x"].isna().iloc[1]  # "oops" is no double: null
    assert frame["n"].iloc[0] == 3 and frame["n"].isna().iloc[1]  # 4.5 is no long: null
    assert frame["flag"].tolist() == [True, False]
    assert frame["prediction"].tolist() == [1, 0]
    assert frame["proba_1"].tolist() == [0.75, 0.5]
    assert frame["complete"].all() and frame["latency_ms"].tolist() == [40.0, 40.0]
    assert frame["time"].iloc[0] == T0 and frame["version"].iloc[0] == "1"


def test_writes_are_idempotent(store: SqlStore):
    store.write_records([record("r1"), record("r2")])
    before = (window(store).sort_values(["request_id", "row"]).reset_index(drop=True), store.counters("shop"))
    store.write_records([record("r1"), record("r2")])  # a replay
    after = (window(store).sort_values(["request_id", "row"]).reset_index(drop=True), store.counters("shop"))
    assert before[0].equals(after[0]) and before[1] == after[1]
    assert after[1].records == 2 and after[1].rows == 4


def test_halves_written_apart_merge_into_one_complete_record(store: SqlStore):
    store.write_records([record("r1", half="response")])
    (alone,) = store.records("shop", T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    assert not alone["complete"] and alone["time"] == T0 + timedelta(milliseconds=40)
    assert window(store)["complete"].sum() == 0
    store.write_records([record("r1", half="request")])
    (merged,) = store.records("shop", T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    assert merged["complete"] and merged["time"] == T0 and merged["latency_ms"] == pytest.approx(40.0)
    frame = window(store).sort_values("row")
    assert frame["complete"].all() and frame["prediction"].tolist() == [1, 0]
    assert frame["x"].iloc[0] == 1.5 and frame["latency_ms"].tolist() == pytest.approx([40.0, 40.0])
    assert (frame["time"] == T0).all()


def test_filters_and_versions(store: SqlStore):
    store.write_records(
        [record("r1"), record("r2", version="2"), record("r3", predictor="shadow", version="2")]
    )
    assert set(window(store, version="2")["request_id"]) == {"r2", "r3"}
    assert set(window(store, predictor="shadow")["request_id"]) == {"r3"}
    assert list(window(store, columns=["x"]).columns).count("n") == 0
    assert store.versions("shop", T0, T0 + timedelta(seconds=1)) == [
        ("champion", "1", 1), ("champion", "2", 1), ("shadow", "2", 1)
    ]  # fmt: skip
    assert window(store).shape[0] == 6
    assert store.rows("shop", T0 + timedelta(seconds=1), T0 + timedelta(hours=1)).empty  # half-open window


def test_untyped_model_is_kept_in_the_request_table(store: SqlStore):
    other = record("r1", model="unknown-model")
    assert store.write_records([other]).untyped == 1
    assert len(store.records("unknown-model", T0, T0 + timedelta(seconds=1))) == 1
    empty = store.rows("unknown-model", T0, T0 + timedelta(seconds=1))
    assert empty.empty and list(empty.columns[: len(ROW_COLUMNS)]) == list(ROW_COLUMNS)
    assert "unknown-model" in store.models()


def test_excluded_features_are_never_stored(tmp_path):
    with SqlStore(f"sqlite:///{tmp_path / 'm.db'}") as store:
        store.ensure_model("shop", FEATURES, ("label", "long"), exclude=["city"])
        store.write_records([record("r1")])
        assert "city" not in window(store).columns
        (stored,) = store.records("shop", T0, T0 + timedelta(seconds=1))
        assert "Oslo" not in stored["request_body"]
        assert json.loads(stored["request_body"])["data"]["names"] == ["x", "n", "flag"]


def test_positional_rows_follow_the_spec_order(store: SqlStore):
    positional = record("r1", names=(), inputs=[[2.5, 7, False, "Bergen"]])
    store.write_records([positional])
    row = window(store).iloc[0]
    assert (row["x"], row["n"], row["flag"], row["city"]) == (2.5, 7, False, "Bergen")


def test_a_changed_feature_type_is_refused_with_the_fix(store: SqlStore):
    with pytest.raises(StoreError, match=r"feature 'n' is stored as long but the spec now says string"):
        store.ensure_model("shop", [("x", "double"), ("n", "string")], ("label", "long"))
    extended = store.ensure_model("shop", [*FEATURES, ("age", "integer")], ("label", "long"))
    assert "age" in extended.feature_names
    store.write_records([record("r1")])
    assert window(store)["age"].isna().all()


def test_labels_are_kept_and_unknown_ids_reported(store: SqlStore):
    store.write_records([record("r1")])
    outcome = store.write_labels("shop", [Label("r1", 1, 0), Label("r1", 0, 1), Label("nope", 1)])
    assert (outcome.written, outcome.matched, outcome.unknown) == (3, 1, ("nope",))
    labels = store.labels("shop", T0, T0 + timedelta(seconds=1)).sort_values("row")
    assert labels["label"].tolist() == [1, 0] and str(labels["label"].dtype) == "Int64"
    store.write_labels("shop", [Label("r1", 0, 0)])  # a correction replaces the label
    assert store.labels("shop", T0, T0 + timedelta(seconds=1)).sort_values("row")["label"].tolist() == [0, 0]
    # the unknown id's request arriving later (e.g. replayed from a spool) matches it
    store.write_records([record("nope")])
    assert len(store.labels("shop", T0, T0 + timedelta(seconds=1))) == 3


def result(window_end: datetime, value: float, *, flagged: bool = False, **kw) -> IndicatorResult:
    fields = dict(
        indicator_id="feature_drift", indicator_type="drift", model="shop", version="1", predictor="champion",
        window_start=window_end - timedelta(minutes=30), window_end=window_end, status="ok", value=value,
        threshold=0.3, flagged=flagged, details={"x": {"p_value": 0.01}},
    )  # fmt: skip
    return IndicatorResult(**(fields | kw))


def test_indicator_results_replace_on_recompute_and_read_newest_first(store: SqlStore):
    store.write_indicators([result(T0, 0.1), result(T0 + timedelta(minutes=30), 0.2)])
    store.write_indicators([result(T0 + timedelta(minutes=30), 0.5, flagged=True)])  # same key: replaced
    (latest,) = store.indicators("shop")
    assert latest.value == 0.5 and latest.flagged and latest.details == {"x": {"p_value": 0.01}}
    assert [r.value for r in store.indicators("shop", last=5)] == [0.5, 0.1]
    assert store.indicators("shop", version="2") == []
    counters = store.counters("shop")
    assert (counters.indicators, counters.flagged) == (2, 1)


def test_purge_at_the_retention_edge(store: SqlStore):
    now = T0 + timedelta(days=30)  # the injected clock
    cutoff = retention_cutoff(now, 30)
    assert cutoff == T0
    store.write_records([record("old", T0 - timedelta(microseconds=1)), record("edge", T0)])
    store.write_labels("shop", [Label("old", 1), Label("edge", 0)])
    store.write_indicators([result(T0, 0.1)])
    assert store.purge("shop", cutoff) == 1
    assert set(window(store, columns=[])["request_id"]) == {"edge"}
    counters = store.counters("shop")
    assert (counters.records, counters.labels, counters.indicators) == (1, 1, 1)
    with pytest.raises(ValueError, match="retention_days must be > 0"):
        retention_cutoff(now, 0)


def test_alert_history_replaces_by_id_and_reads_newest_first(store: SqlStore):
    from pushbutton.alerting.events import ActionTaken, AlertEvent

    def event(rule: str, minutes: int, state: str = "firing", version: str = "1", **kw) -> AlertEvent:
        return AlertEvent(id=f"{rule}-{minutes}-{state}", model="shop", rule=rule, state=state, severity="warning",
                          at=T0 + timedelta(minutes=minutes), version=version, predictor="champion", **kw)  # fmt: skip

    assert store.write_alerts([event("drift", 0), event("drift", 30, "resolved"), event("errors", 10)]) == 3
    assert [(e.rule, e.state) for e in store.alerts("shop")] == [("drift", "resolved"), ("errors", "firing"),
                                                                 ("drift", "firing")]  # fmt: skip
    # a re-run of the task that recorded an event replaces it (here: with its action's outcome)
    done = event("drift", 0, actions=[ActionTaken("retrain", "requested", "asset event")], value=0.75)
    store.write_alerts([done])
    kept = store.alerts("shop", rule="drift")
    assert len(kept) == 2 and kept[1].outcome("retrain") == ActionTaken("retrain", "requested", "asset event")
    assert kept[1].value == 0.75 and kept[1].at == T0
    assert [e.rule for e in store.alerts("shop", since=T0 + timedelta(minutes=5))] == ["drift", "errors"]
    assert [e.state for e in store.alerts("shop", limit=1)] == ["resolved"]
    store.write_alerts([event("drift", 40, version="2")])
    assert [e.version for e in store.alerts("shop", version="2")] == ["2"]
    assert store.alerts("other") == []


def test_counters(store: SqlStore):
    store.write_records([record("r1"), record("r2", half="request"), record("r3", status=500)])
    counters = store.counters()
    assert (counters.records, counters.incomplete, counters.errors, counters.rows) == (3, 1, 1, 6)
    assert counters.first == T0 and counters.per_model == {"shop": 3}


def test_naive_times_and_unreachable_stores_are_clear_errors(store: SqlStore, tmp_path):
    with pytest.raises(StoreError, match="has no timezone"):
        store.rows("shop", datetime(2025, 1, 1), datetime(2025, 1, 2))
    with pytest.raises(StoreUnavailable, match="cannot create the monitoring tables"):
        SqlStore(f"sqlite:///{tmp_path / 'missing-dir' / 'm.db'}")
    with pytest.raises(StoreError, match="has no scheme"):
        open_store("monitoring.db")


def test_small_writes_are_compacted_and_reads_agree_with_the_typed_rows(store: SqlStore, caplog):
    for i in range(40):  # a trickle: one request (two rows) per write
        store.write_records([record(f"r{i:02d}", T0 + timedelta(seconds=i))])
    with store.engine.connect() as conn:
        tiers = sorted(r[0] for r in conn.exec_driver_sql("SELECT tier FROM pbmon_chunks"))
    assert tiers == [0] * 8 + [1, 1]  # 16 one-request chunks merged into one, twice
    frame = window(store)
    assert len(frame) == 80 and frame["request_id"].nunique() == 40
    with store.engine.begin() as conn:  # chunks lost: the typed table still answers, with a warning
        conn.exec_driver_sql("DELETE FROM pbmon_chunks WHERE tier = 1")
    assert (
        window(store)
        .sort_values(["request_id", "row"])
        .reset_index(drop=True)
        .equals(frame.sort_values(["request_id", "row"]).reset_index(drop=True))
    )
    assert "disagree with its typed rows" in caplog.text


def test_a_store_names_itself_without_its_password(tmp_path) -> None:
    with pytest.raises(StoreUnavailable) as caught:  # port 1: refused at once
        SqlStore("postgresql+psycopg://writer:s3cret@127.0.0.1:1/monitoring")
    assert "s3cret" not in str(caught.value) and "writer:***@127.0.0.1:1/monitoring" in str(caught.value)
    store = SqlStore(f"sqlite:///{tmp_path / 'm.db'}")
    assert store.url == f"sqlite:///{tmp_path / 'm.db'}"  # what /status and the logger's log line show
    store.close()

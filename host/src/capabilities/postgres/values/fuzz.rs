//! Fuzzing PostgreSQL value conversion against a real server: random values of every type
//! Hostel converts, sent as `$1::type` and read back, come back as they went (timestamps to
//! the microsecond PostgreSQL keeps, jsonb as the same JSON); values a type cannot hold are a
//! conversion or server error, never a panic or a wrong value.

use super::super::v0_1::hostel::host::postgres::{Timestamp, Value};
use super::{Decoded, Shape, params};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use tokio_postgres::types::ToSql;

/// A value to send, the type to send it as, and what must come back (`None`: an error).
#[derive(Debug, Clone)]
struct Case {
    ty: &'static str,
    sent: Value,
    expected: Option<Value>,
}

/// Seconds of 0001-01-01 and 9999-12-31.
const YEAR_1: i64 = -62_135_596_800;
const YEAR_9999: i64 = 253_402_300_799;
/// The first and last second PostgreSQL's timestamps hold (4713-11-24 BC, 294276-12-31 AD).
const PG_FIRST: i64 = -210_866_803_200;
const PG_LAST: i64 = 9_224_318_015_999;

fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i32>().prop_map(serde_json::Value::from),
        "\\PC{0,8}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map("[a-z]{0,3}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A case that must come back as `expected`.
fn fits(ty: &'static str, sent: Value, expected: Value) -> Case {
    Case {
        ty,
        sent,
        expected: Some(expected),
    }
}

fn case() -> impl Strategy<Value = Case> {
    prop_oneof![
        any::<bool>().prop_map(|b| fits("bool", Value::Boolean(b), Value::Boolean(b))),
        any::<i64>().prop_map(|n| Case {
            ty: "int2",
            sent: Value::Int64(n),
            expected: i16::try_from(n).ok().map(Value::Int16),
        }),
        any::<i64>().prop_map(|n| Case {
            ty: "int4",
            sent: Value::Int64(n),
            expected: i32::try_from(n).ok().map(Value::Int32),
        }),
        any::<i16>().prop_map(|n| fits("int8", Value::Int16(n), Value::Int64(n.into()))),
        any::<i64>().prop_map(|n| fits("int8", Value::Int64(n), Value::Int64(n))),
        any::<f32>().prop_map(|f| fits("float4", Value::Float32(f), Value::Float32(f))),
        any::<f32>().prop_map(|f| fits("float8", Value::Float32(f), Value::Float64(f.into()))),
        any::<f64>().prop_map(|f| fits("float8", Value::Float64(f), Value::Float64(f))),
        // Text with a NUL is refused by the server (it cannot store one).
        "\\PC{0,40}|[\\x00-\\x7f]{0,8}".prop_map(|s| Case {
            ty: "text",
            expected: (!s.contains('\0')).then(|| Value::Text(s.clone())),
            sent: Value::Text(s),
        }),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(|b| fits(
            "bytea",
            Value::Bytes(b.clone()),
            Value::Bytes(b)
        )),
        json().prop_map(|j| {
            let text = j.to_string();
            fits("json", Value::Json(text.clone()), Value::Json(text))
        }),
        json().prop_map(|j| {
            let text = j.to_string();
            let text = (!text.contains("\\u0000")).then_some(text);
            Case {
                ty: "jsonb",
                sent: Value::Json(text.clone().unwrap_or_else(|| "\"\\u0000\"".into())),
                expected: text.map(Value::Json),
            }
        }),
        (YEAR_1..YEAR_9999, 0u32..1_000_000_000).prop_map(|(seconds, nanoseconds)| {
            let sent = Timestamp {
                seconds,
                nanoseconds,
            };
            let kept = Timestamp {
                seconds,
                nanoseconds: nanoseconds / 1000 * 1000,
            };
            fits(
                "timestamptz",
                Value::Timestamp(sent),
                Value::Timestamp(kept),
            )
        }),
        // Anywhere in an i64: PostgreSQL keeps 4713 BC to 294276 AD, and refuses the rest.
        (any::<i64>(), 0u32..1_000_000_000).prop_map(|(seconds, nanoseconds)| Case {
            ty: "timestamp",
            sent: Value::Timestamp(Timestamp {
                seconds,
                nanoseconds
            }),
            expected: (PG_FIRST..=PG_LAST)
                .contains(&seconds)
                .then_some(Value::Timestamp(Timestamp {
                    seconds,
                    nanoseconds: nanoseconds / 1000 * 1000
                },)),
        }),
        (any::<u64>(), any::<u64>()).prop_map(|u| fits("uuid", Value::Uuid(u), Value::Uuid(u))),
        Just(Case {
            ty: "int4",
            sent: Value::Null,
            expected: Some(Value::Null)
        }),
        any::<bool>().prop_map(|b| Case {
            ty: "int4",
            sent: Value::Boolean(b),
            expected: None
        }),
    ]
}

/// Whether two values are the same, NaN being itself and JSON compared as JSON.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float32(x), Value::Float32(y)) => {
            x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
        }
        (Value::Float64(x), Value::Float64(y)) => {
            x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
        }
        (Value::Json(x), Value::Json(y)) => {
            serde_json::from_str::<serde_json::Value>(x).ok() == serde_json::from_str(y).ok()
        }
        _ => format!("{a:?}") == format!("{b:?}"),
    }
}

#[test]
fn every_value_round_trips_through_postgresql_or_is_refused() {
    let pg = hostel_tests::PostgresServer::start().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    });
    let mut runner = TestRunner::new(hostel_tests::fuzz_config(3000, file!()));
    let outcome = runner.run(&case(), |case| {
        let sql = format!("SELECT $1::{} AS v", case.ty);
        let got: Result<Value, String> = runtime.block_on(async {
            let statement = client.prepare(&sql).await.map_err(|e| e.to_string())?;
            let sent = [case.sent.clone()];
            let converted = params(&Shape::of(&statement), &sent)?;
            let refs: Vec<&(dyn ToSql + Sync)> =
                converted.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            let row = client
                .query_one(&statement, &refs)
                .await
                .map_err(|e| e.to_string())?;
            row.try_get::<_, Decoded>(0)
                .map(|d| d.0)
                .map_err(|e| e.to_string())
        });
        match (&case.expected, got) {
            (Some(expected), Ok(got)) => {
                prop_assert!(same(expected, &got), "{case:?}: got {got:?}")
            }
            (None, Err(_)) => {}
            (expected, got) => prop_assert!(false, "{case:?}: expected {expected:?}, got {got:?}"),
        }
        Ok(())
    });
    println!("fuzz postgres values: {} cases", runner.config().cases);
    outcome.unwrap();
}

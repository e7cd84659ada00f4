//! Ready to shard by customer on Citus, proven without Citus: the migrated catalog and every
//! committed statement (`.sqlx/`) are checked against the declared placement of each table
//! (`partner_catalog::db::sharding`). Citus refuses what these tests refuse; the single-shard
//! purchase itself is proven on a real cluster by `tests/faults/citus.rs`, where Citus exists.

use std::collections::{BTreeMap, BTreeSet};

use partner_catalog::db::sharding::{FAN_OUTS, PLANNED_TABLES, Placement, TABLES, placement};
use sqlx::PgPool;

use crate::helpers::spawn_app;

/// The shard column of `table`, if it is distributed.
fn shard_column(table: &str) -> Option<&'static str> {
    match placement(table)? {
        Placement::Distributed(column) => Some(column),
        Placement::Reference | Placement::Local => None,
    }
}

#[tokio::test]
async fn every_table_is_placed_and_its_keys_let_citus_distribute_it() {
    let app = spawn_app().await;
    let problems = catalog_problems(&app.pool).await;
    assert!(
        problems.is_empty(),
        "the schema does not distribute as declared:\n{}",
        problems.join("\n")
    );
}

/// A foreign key: its name, its table, the referenced table, and the paired columns.
type ForeignKey = (String, String, String, Vec<String>, Vec<String>);

/// Everything in the migrated catalog that Citus would refuse under the declared placement.
async fn catalog_problems(pool: &PgPool) -> Vec<String> {
    let mut problems = Vec::new();
    let tables: BTreeSet<String> = sqlx::query_scalar(
        "select relname::text from pg_class
         where relnamespace = 'public'::regnamespace and relkind in ('r', 'p')
           and relname <> '_sqlx_migrations'",
    )
    .fetch_all(pool)
    .await
    .expect("list tables")
    .into_iter()
    .collect();
    for table in &tables {
        if placement(table).is_none() {
            problems.push(format!("{table}: no placement in db::sharding::TABLES"));
        }
    }
    for (table, _) in TABLES {
        if !tables.contains(*table) {
            problems.push(format!("{table}: declared but not in the schema"));
        }
    }
    let declared: Vec<&str> = TABLES
        .iter()
        .chain(PLANNED_TABLES)
        .map(|(t, _)| *t)
        .filter(|t| tables.contains(*t))
        .collect();

    // Shard columns: present, not null, not generated.
    for table in &declared {
        let Some(column) = shard_column(table) else {
            continue;
        };
        let row: Option<(bool, String)> = sqlx::query_as(
            "select attnotnull, attgenerated::text from pg_attribute
             where attrelid = $1::regclass and attname = $2 and not attisdropped",
        )
        .bind(*table)
        .bind(column)
        .fetch_optional(pool)
        .await
        .expect("read shard column");
        match row {
            None => problems.push(format!("{table}: no shard column {column}")),
            Some((not_null, generated)) => {
                if !not_null {
                    problems.push(format!("{table}.{column}: shard column is nullable"));
                }
                if !generated.is_empty() {
                    problems.push(format!("{table}.{column}: shard column is generated"));
                }
            }
        }
    }

    // Primary keys and unique indexes (constraints or not) of distributed tables.
    let unique: Vec<(String, String, Vec<String>)> = sqlx::query_as(
        "select c.relname::text, i.relname::text,
                array(select a.attname::text from unnest(x.indkey) k join pg_attribute a
                      on a.attrelid = x.indrelid and a.attnum = k)
         from pg_index x join pg_class c on c.oid = x.indrelid join pg_class i on i.oid = x.indexrelid
         where c.relnamespace = 'public'::regnamespace and x.indisunique",
    )
    .fetch_all(pool)
    .await
    .expect("read unique indexes");
    for (table, index, columns) in unique {
        if let Some(column) = shard_column(&table)
            && !columns.iter().any(|c| c == column)
        {
            problems.push(format!(
                "{table}: unique index {index} ({}) lacks shard column {column}",
                columns.join(", ")
            ));
        }
    }

    // Foreign keys: between distributed tables they must pair the two shard columns; a reference
    // table may not point at a distributed one.
    let foreign: Vec<ForeignKey> = sqlx::query_as(
        "select k.conname::text, s.relname::text, t.relname::text,
                array(select a.attname::text from unnest(k.conkey) with ordinality u(n, i)
                      join pg_attribute a on a.attrelid = k.conrelid and a.attnum = u.n order by u.i),
                array(select a.attname::text from unnest(k.confkey) with ordinality u(n, i)
                      join pg_attribute a on a.attrelid = k.confrelid and a.attnum = u.n order by u.i)
         from pg_constraint k join pg_class s on s.oid = k.conrelid join pg_class t on t.oid = k.confrelid
         where k.contype = 'f' and s.relnamespace = 'public'::regnamespace",
    )
    .fetch_all(pool)
    .await
    .expect("read foreign keys");
    for (name, from, to, columns, referenced) in foreign {
        match (shard_column(&from), shard_column(&to)) {
            (None, Some(_)) => problems.push(format!(
                "{from}: foreign key {name} from a reference table to distributed {to}"
            )),
            (Some(from_column), Some(to_column)) => {
                let paired = columns
                    .iter()
                    .zip(&referenced)
                    .any(|(c, r)| c == from_column && r == to_column);
                if !paired {
                    problems.push(format!(
                        "{from}: foreign key {name} to {to} does not pair {from_column} with {to_column}"
                    ));
                }
            }
            _ => {}
        }
    }
    problems
}

#[tokio::test]
async fn every_statement_on_a_distributed_table_names_its_shard_or_is_a_documented_fan_out() {
    let app = spawn_app().await;
    // What "volatile" means is the database's own word for it.
    let volatile: BTreeSet<String> =
        sqlx::query_scalar("select distinct proname::text from pg_proc where provolatile = 'v'")
            .fetch_all(&app.pool)
            .await
            .expect("read volatile functions")
            .into_iter()
            .collect();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/.sqlx");
    let mut problems = Vec::new();
    let mut statements = 0;
    for entry in std::fs::read_dir(dir).expect("read .sqlx") {
        let path = entry.expect("read .sqlx entry").path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let data: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read query data"))
                .expect("query data is JSON");
        let sql = data["query"].as_str().expect("query data names its query");
        statements += 1;
        for problem in statement_problems(sql, &volatile) {
            problems.push(format!("{problem}\n    in: {}", one_line(sql)));
        }
    }
    assert!(statements > 0, "no query data in {dir}");
    assert!(
        problems.is_empty(),
        "statements that would not route to one shard on Citus:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_statement_check_refuses_what_citus_would_fan_out_or_reject() {
    let volatile = BTreeSet::from(["clock_timestamp".to_owned()]);
    let refused = [
        "update subscriptions set status = $2 where id = $1",
        "select * from events e left join event_chain_heads h on h.chain_id = e.chain_id where e.chain_id = $1",
        "select 1 from subscriptions where ($1::uuid is null or customer_id = $1)",
        "insert into events (customer_id, payload) values ($1, $2)",
        "select * from customers c where c.id > $1 -- fan-out: because",
        "update customers set version = version + 1, name = clock_timestamp()::text where id = $1",
    ];
    for sql in refused {
        assert!(
            !statement_problems(sql, &volatile).is_empty(),
            "accepted: {sql}"
        );
    }
    let accepted = [
        "update subscriptions set status = $3 where customer_id = $1 and id = $2",
        "select * from events e left join event_chain_heads h on h.chain_id = $1 where e.chain_id = $1",
        "insert into events (chain_id, customer_id) values ($1, $1)",
        "select * from customers c where c.id > $1 -- fan-out: customer list\n order by c.id",
        "select * from partners where id = $1",
    ];
    for sql in accepted {
        assert_eq!(
            statement_problems(sql, &volatile),
            Vec::<String>::new(),
            "{sql}"
        );
    }
}

fn one_line(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Words after a table name that are not its alias.
const NOT_ALIASES: &[&str] = &[
    "where",
    "on",
    "left",
    "right",
    "inner",
    "full",
    "cross",
    "join",
    "set",
    "select",
    "values",
    "order",
    "limit",
    "for",
    "group",
    "using",
    "returning",
    "union",
    "default",
    "of",
];

/// Tokens of `sql`, lowercased: words (with `.` inside, so `h.chain_id` is one), `$n` parameters
/// and single punctuation; literals and quoted identifiers (sqlx's type overrides) dropped.
fn tokens(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_alphanumeric() || c == '_' || c == '$' {
            let mut word = c.to_string();
            while let Some(&n) = chars.peek() {
                if n.is_alphanumeric() || n == '_' || n == '.' {
                    word.push(n);
                    chars.next();
                } else {
                    break;
                }
            }
            out.push(word.to_lowercase());
        } else if c == '\'' || c == '"' {
            for n in chars.by_ref() {
                if n == c {
                    break;
                }
            }
        } else if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            out.push("::".into());
        } else if !c.is_whitespace() {
            out.push(c.to_string());
        }
    }
    out
}

/// Why `sql` would not be a single-shard statement on Citus (empty: it would be, or it is a
/// documented fan-out), and whether it is an UPDATE calling a volatile function.
fn statement_problems(sql: &str, volatile: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut fan_out = None;
    let mut code = String::new();
    for line in sql.lines() {
        match line.split_once("--") {
            Some((before, comment)) => {
                code.push_str(before);
                if let Some(reason) = comment.trim().strip_prefix("fan-out:") {
                    fan_out = Some(reason.trim().to_owned());
                }
            }
            None => code.push_str(line),
        }
        code.push('\n');
    }
    let t = tokens(&code);
    if let Some(reason) = &fan_out
        && !FAN_OUTS.contains(&reason.as_str())
    {
        problems.push(format!(
            "fan-out reason {reason:?} is not in db::sharding::FAN_OUTS"
        ));
    }
    if t.iter().any(|w| w == "update") {
        for pair in t.windows(2) {
            if pair[1] == "(" && volatile.contains(&pair[0]) {
                problems.push(format!("UPDATE calls volatile {}()", pair[0]));
            }
        }
    }
    // DDL is propagated to every shard by Citus itself.
    if t.first()
        .is_some_and(|w| ["alter", "create", "drop"].contains(&w.as_str()))
    {
        return problems;
    }
    // Parameters used only inside "$n is null or ...": the filter is optional, so not a shard key.
    let optional: BTreeSet<&str> = t
        .windows(5)
        .filter(|w| w[0].starts_with('$') && w[1] == "::" && w[3] == "is" && w[4] == "null")
        .map(|w| w[0].as_str())
        .chain(
            t.windows(3)
                .filter(|w| w[0].starts_with('$') && w[1] == "is" && w[2] == "null")
                .map(|w| w[0].as_str()),
        )
        .collect();
    let fixed = |qualified: &[String]| {
        t.windows(3).any(|w| {
            let param = |s: &String| s.starts_with('$') && !optional.contains(s.as_str());
            (qualified.contains(&w[0]) && w[1] == "=" && param(&w[2]))
                || (param(&w[0]) && w[1] == "=" && qualified.contains(&w[2]))
        })
    };
    for (i, word) in t.iter().enumerate() {
        let Some(column) = shard_column(word) else {
            continue;
        };
        if i > 0 && t[i - 1] == "into" && t.get(i + 1).is_some_and(|n| n == "(") {
            // An insert names the shard column of every row it writes.
            let listed = t[i + 2..]
                .iter()
                .take_while(|w| *w != ")")
                .any(|w| w == column);
            if !listed {
                problems.push(format!("insert into {word} does not name {column}"));
            }
            continue;
        }
        let mut next = i + 1;
        if t.get(next).is_some_and(|n| n == "as") {
            next += 1;
        }
        let alias = t
            .get(next)
            .filter(|n| {
                n.chars().next().is_some_and(|c| c.is_alphabetic())
                    && !NOT_ALIASES.contains(&n.as_str())
            })
            .cloned();
        let qualified = match &alias {
            Some(a) => vec![format!("{a}.{column}")],
            None => vec![column.to_owned(), format!("{word}.{column}")],
        };
        if !fixed(&qualified) && fan_out.is_none() {
            problems.push(format!(
                "{word}{} is not fixed to one shard ({} = $n)",
                alias
                    .as_deref()
                    .map(|a| format!(" {a}"))
                    .unwrap_or_default(),
                qualified[0]
            ));
        }
    }
    problems
}

#[test]
fn the_mapping_names_each_table_once_and_fan_outs_have_reasons() {
    let mut seen = BTreeMap::new();
    for (table, placement) in TABLES.iter().chain(PLANNED_TABLES) {
        assert!(
            seen.insert(*table, *placement).is_none(),
            "{table} is placed twice"
        );
    }
    assert!(FAN_OUTS.iter().all(|r| !r.is_empty()));
}

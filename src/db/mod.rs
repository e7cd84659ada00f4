//! Persistence: every SQL statement of the service, checked at compile time by `sqlx::query!`.
//! Functions take `impl PgExecutor` (a pool or a transaction); callers own `begin`/`commit`.

pub mod audit;
pub mod customers;
pub mod events;
pub mod idempotency;
pub mod import_jobs;
pub mod offers;
pub mod partners;
pub mod policies;
pub mod policy_impact;
pub mod principals;
pub mod purchases;
pub mod seed;
pub mod sharding;
pub mod subscriptions;
pub mod tokens;
pub mod users;
pub mod webhooks;

use sqlx::{
    Decode, Postgres, Type,
    error::BoxDynError,
    migrate::MigrateDatabase,
    postgres::{PgHasArrayType, PgTypeInfo, PgValueRef},
};
use uuid::Uuid;

use crate::domain::{
    CustomerId, CustomerQualification, FileFormat, ImportJobId, ImportJobStatus, OfferId,
    PartnerId, PartnerKind, PrincipalKind, ProductKind, ResellerQualification, Role, Segment,
    SpecialQualification, SubscriptionId, SubscriptionStatus,
};

/// A database call that failed, and which statement it was: the log says where, the client never
/// sees it.
#[derive(Debug, thiserror::Error)]
#[error("database statement `{statement}` failed")]
pub struct Error {
    /// The statement, as `module::function`.
    pub statement: &'static str,
    /// Why.
    #[source]
    pub source: sqlx::Error,
}

/// The result of a database call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Names the statement of a database call's result.
pub trait Context<T> {
    /// Attaches `statement` to the error, if any.
    fn context(self, statement: &'static str) -> Result<T>;
}

impl<T> Context<T> for sqlx::Result<T> {
    fn context(self, statement: &'static str) -> Result<T> {
        self.map_err(|source| Error { statement, source })
    }
}

/// Creates the database named in `url` if it does not exist, then applies pending migrations.
/// Safe to run from several instances at once: creation races are tolerated and sqlx serializes
/// migrations with an advisory lock.
pub async fn prepare_database(url: &str) -> anyhow::Result<()> {
    if !anyhow::Context::context(
        Postgres::database_exists(url).await,
        "cannot reach PostgreSQL",
    )? {
        match Postgres::create_database(url).await {
            Ok(()) => tracing::info!("created the database"),
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            Err(e) => return Err(anyhow::Error::new(e).context("cannot create the database")),
        }
    }
    let pool = anyhow::Context::context(
        sqlx::PgPool::connect(url).await,
        "cannot connect to the database",
    )?;
    anyhow::Context::context(MIGRATOR.run(&pool).await, "cannot apply migrations")?;
    pool.close().await;
    Ok(())
}

/// Begins a transaction whose statements all read one consistent snapshot and cannot write.
pub async fn begin_read_only(pool: &sqlx::PgPool) -> Result<sqlx::Transaction<'static, Postgres>> {
    let mut tx = pool.begin().await.context("begin_read_only")?;
    sqlx::query!("set transaction isolation level repeatable read, read only")
        .execute(&mut *tx)
        .await
        .context("begin_read_only")?;
    Ok(tx)
}

/// Sets `statement_timeout` for the rest of the transaction, for work that needs more time than
/// the connection's setting allows.
pub async fn set_local_statement_timeout(
    tx: &mut sqlx::PgConnection,
    limit: std::time::Duration,
) -> Result<()> {
    // `set local` takes no parameters; `set_config(..., true)` is its parameterized form.
    sqlx::query!(
        "select set_config('statement_timeout', $1, true)",
        format!("{}ms", limit.as_millis())
    )
    .fetch_one(tx)
    .await
    .context("set_local_statement_timeout")?;
    Ok(())
}

/// The migrations embedded in this build.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Whether the database answers and has applied the newest migration of this build.
pub async fn migrations_applied(pool: &sqlx::PgPool) -> Result<bool> {
    let newest = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    let applied = sqlx::query_scalar!(
        r#"select exists(select 1 from _sqlx_migrations where version = $1 and success) as "applied!""#,
        newest
    )
    .fetch_one(pool)
    .await.context("migrations_applied")?;
    Ok(applied)
}

/// Where a keyset-paginated listing resumes.
#[derive(Debug, Clone, Copy)]
pub struct Keyset {
    /// Return rows whose id sorts after this one (ids are UUIDv7, so oldest first).
    pub after: Option<Uuid>,
    /// At most this many rows.
    pub limit: i64,
}

impl Keyset {
    /// The lower bound to compare ids against; the nil UUID sorts before every v7 id.
    fn after(&self) -> Uuid {
        self.after.unwrap_or(Uuid::nil())
    }
}

// Domain enums are stored as text; these impls let `query_as!` decode them with overrides such as
// `kind as "kind: PartnerKind"` while the domain itself stays free of sqlx.
macro_rules! text_column {
    ($($ty:ty),+) => {$(
        impl Type<Postgres> for $ty {
            fn type_info() -> PgTypeInfo {
                <&str as Type<Postgres>>::type_info()
            }
            fn compatible(ty: &PgTypeInfo) -> bool {
                <&str as Type<Postgres>>::compatible(ty)
            }
        }
        impl<'r> Decode<'r, Postgres> for $ty {
            fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
                Ok(<&str as Decode<Postgres>>::decode(value)?.parse()?)
            }
        }
        impl PgHasArrayType for $ty {
            fn array_type_info() -> PgTypeInfo {
                <&str as PgHasArrayType>::array_type_info()
            }
        }
    )+};
}
text_column!(
    Role,
    PartnerKind,
    ResellerQualification,
    SpecialQualification,
    Segment,
    ProductKind,
    SubscriptionStatus,
    FileFormat,
    ImportJobStatus,
    PrincipalKind
);

macro_rules! uuid_column {
    ($($ty:ident),+) => {$(
        impl Type<Postgres> for $ty {
            fn type_info() -> PgTypeInfo {
                <Uuid as Type<Postgres>>::type_info()
            }
        }
        impl<'r> Decode<'r, Postgres> for $ty {
            fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
                Ok($ty(<Uuid as Decode<Postgres>>::decode(value)?))
            }
        }
        impl PgHasArrayType for $ty {
            fn array_type_info() -> PgTypeInfo {
                <Uuid as PgHasArrayType>::array_type_info()
            }
        }
    )+};
}
uuid_column!(PartnerId, CustomerId, OfferId, SubscriptionId, ImportJobId);

/// The stored `text[]`. The database checks it against the sets of the policy version in force
/// when it was recorded, so a set recorded under another version still reads back.
impl Type<Postgres> for CustomerQualification {
    fn type_info() -> PgTypeInfo {
        <Vec<String> as Type<Postgres>>::type_info()
    }
}

impl<'r> Decode<'r, Postgres> for CustomerQualification {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        let set = <Vec<SpecialQualification> as Decode<Postgres>>::decode(value)?;
        Ok(set.into_iter().collect())
    }
}

/// Text of every element, for binding a set of enum values as `text[]`.
fn texts<T: Copy>(values: &[T], as_str: fn(T) -> &'static str) -> Vec<&'static str> {
    values.iter().map(|v| as_str(*v)).collect()
}

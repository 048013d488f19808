//! The OpenTelemetry attributes of a failed query (`error.type`,
//! `db.response.status_code`), as the query path records them.

use crate::error::Error;

/// The OpenTelemetry `error.type` and `db.response.status_code` of a failed
/// query: the database's own code when it gave one (PostgreSQL's SQLSTATE,
/// MySQL's error number, SQLite's extended result code) for both, else the
/// sqlx error's kind with no status code.
pub(crate) fn error_attributes(err: &sqlx::Error) -> (String, Option<String>) {
    use sqlx::Error as E;
    if let E::Database(db) = err {
        #[cfg(feature = "mysql")]
        if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
            let n = my.number().to_string();
            return (n.clone(), Some(n));
        }
        if let Some(code) = db.code() {
            return (code.to_string(), Some(code.into_owned()));
        }
    }
    if let Some(e) = Error::from_sqlx(err) {
        let kind = if e.is_query_timeout() {
            "timeout"
        } else {
            "_OTHER"
        };
        return (kind.to_owned(), None);
    }
    let kind = match err {
        E::Configuration(_) => "configuration",
        E::Database(_) => "database",
        E::Io(_) => "io",
        E::Tls(_) => "tls",
        E::Protocol(_) => "protocol",
        E::RowNotFound => "row_not_found",
        E::TypeNotFound { .. } => "type_not_found",
        E::ColumnIndexOutOfBounds { .. } => "column_index_out_of_bounds",
        E::ColumnNotFound(_) => "column_not_found",
        E::ColumnDecode { .. } => "column_decode",
        E::Encode(_) => "encode",
        E::Decode(_) => "decode",
        E::AnyDriverError(_) => "driver",
        E::PoolTimedOut => "pool_timed_out",
        E::PoolClosed => "pool_closed",
        E::WorkerCrashed => "worker_crashed",
        _ => "_OTHER",
    };
    (kind.to_owned(), None)
}

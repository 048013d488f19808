//! Which errors are evidence of a failing database: one judgement for the
//! circuit breaker and for the query-error signals.

/// How one call ended, for the breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The database answered (a constraint violation or a missing row is an
    /// answer too).
    Success,
    /// The database could not be reached or did not answer in time.
    Failure,
    /// Not counted (a cancelled call).
    Ignored,
}

/// The default outcome of an sqlx error, one judgement for the circuit
/// breaker and for the query-error signals (the error-rate rules): is this
/// evidence that the database is failing?
///
/// - Ignored: a closed pool (a deliberate shutdown). (The guard's own
///   refusals, load shedding and an open breaker, are judged before they
///   become `PoolTimedOut`, and never reach the classifier.)
/// - Failure: connection, I/O, TLS and protocol errors, pool timeouts,
///   query timeouts, a crashed worker, and the database errors that say the
///   server is unavailable or overloaded: SQLSTATE classes 08 (connection),
///   53 (insufficient resources), 57 (operator intervention, including a
///   cancelled statement), 58 (system error) and XX (internal error), and
///   with the `mysql` feature the MySQL/MariaDB equivalents by error number
///   (too many connections 1040/1203, out of memory 1037/1038/1041, disk
///   full 1021, shutdown 1053, query interrupted or over its time limit
///   1317/1969/3024, connection killed or aborted 1927/1152, server gone
///   2006/2013, plus SQLSTATE class 08), and with `sqlite` SQLite's
///   out of memory, I/O error, corrupt, full, cannot open and not a
///   database.
/// - Success: every other answer from the database: constraint violations
///   (a unique violation is not an unhealthy database), syntax errors, row
///   not found, decode errors.
///
/// An acquire timeout while every connection was busy is overload, not a
/// failing database: the guard ignores it before asking the classifier.
///
/// ```
/// use poolguard::{breaker::classify, Outcome};
/// assert_eq!(classify(&sqlx::Error::RowNotFound), Outcome::Success);
/// assert_eq!(classify(&sqlx::Error::PoolTimedOut), Outcome::Failure);
/// ```
pub fn classify(err: &sqlx::Error) -> Outcome {
    use sqlx::Error as E;
    match err {
        E::PoolClosed => Outcome::Ignored,
        E::Io(_) | E::Tls(_) | E::Protocol(_) | E::PoolTimedOut | E::WorkerCrashed => {
            Outcome::Failure
        }
        E::Database(db) if server_unavailable(&**db) => Outcome::Failure,
        _ => Outcome::Success,
    }
}

/// SQLSTATE classes of a server that cannot serve (see [`classify`]).
const FAILING_CLASSES: [&str; 5] = ["08", "53", "57", "58", "XX"];

/// MySQL/MariaDB error numbers of a server that cannot serve.
#[cfg(feature = "mysql")]
const FAILING_MYSQL: [u16; 14] = [
    1021, 1037, 1038, 1040, 1041, 1053, 1152, 1203, 1317, 1927, 1969, 2006, 2013, 3024,
];

/// SQLite primary result codes of a database that cannot serve: out of
/// memory, I/O error, corrupt, full, cannot open, not a database.
#[cfg(feature = "sqlite")]
const FAILING_SQLITE: [u32; 6] = [7, 10, 11, 13, 14, 26];

fn server_unavailable(db: &dyn sqlx::error::DatabaseError) -> bool {
    let code = db.code();
    #[cfg(feature = "sqlite")]
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // SQLite's code is its (extended) result code, a number.
        return code
            .and_then(|c| c.parse::<u32>().ok())
            .is_some_and(|n| FAILING_SQLITE.contains(&(n & 0xFF)));
    }
    #[cfg(feature = "mysql")]
    if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        // By number, and by SQLSTATE below (08S01, 08004: network, handshake).
        if FAILING_MYSQL.contains(&my.number()) {
            return true;
        }
    }
    code.is_some_and(|c| c.len() == 5 && FAILING_CLASSES.iter().any(|f| c.starts_with(f)))
}

/// Classifies call errors for the breaker.
pub(crate) type Classifier = std::sync::Arc<dyn Fn(&sqlx::Error) -> Outcome + Send + Sync>;

#[cfg(test)]
mod tests;

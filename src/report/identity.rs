//! Who the pool talks to, in OpenTelemetry's terms: `db.system.name`,
//! `db.namespace`, `server.address`, `server.port`, read once at build
//! from the pool's connect options (never the password), and the default
//! pool name the conventions advise, `server.address:server.port/db.namespace`.

use sqlx::{Database, Pool};

/// The database a guard's pool connects to, as OpenTelemetry attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PoolIdentity {
    /// `db.system.name`: `postgresql`, `mysql`, `sqlite`, or `other_sql`.
    pub(crate) system: &'static str,
    /// `db.namespace`: the database name (SQLite: the file name).
    pub(crate) namespace: Option<String>,
    /// `server.address` (not for SQLite).
    pub(crate) address: Option<String>,
    /// `server.port` (not for SQLite).
    pub(crate) port: Option<u16>,
}

/// `db.system.name` of an sqlx driver (its `Database::NAME`).
pub(crate) fn system_name(driver: &str) -> &'static str {
    match driver {
        "PostgreSQL" => "postgresql",
        "MySQL" => "mysql",
        "SQLite" => "sqlite",
        _ => "other_sql",
    }
}

impl PoolIdentity {
    /// Reads the identity from the pool's connect options, for the drivers
    /// whose feature is on (sqlx's `to_url_lossy` panics on some options,
    /// e.g. in-memory SQLite, so the typed getters are read instead). With
    /// the driver's feature off only `db.system.name` is known.
    pub(crate) fn of<DB: Database>(pool: &Pool<DB>) -> Self {
        let system = system_name(DB::NAME);
        let opts = pool.connect_options();
        let any: &dyn std::any::Any = &*opts;
        let mut id = Self {
            system,
            namespace: None,
            address: None,
            port: None,
        };
        #[cfg(feature = "postgres")]
        if let Some(o) = any.downcast_ref::<sqlx::postgres::PgConnectOptions>() {
            id.server(o.get_socket(), o.get_host(), o.get_port(), o.get_database());
        }
        #[cfg(feature = "mysql")]
        if let Some(o) = any.downcast_ref::<sqlx::mysql::MySqlConnectOptions>() {
            id.server(o.get_socket(), o.get_host(), o.get_port(), o.get_database());
        }
        #[cfg(feature = "sqlite")]
        if let Some(o) = any.downcast_ref::<sqlx::sqlite::SqliteConnectOptions>() {
            let file = o.get_filename().to_string_lossy();
            id.namespace = (!file.is_empty()).then(|| file.into_owned());
        }
        let _ = any;
        id
    }

    /// A server's address (a Unix socket's path when connected through
    /// one), port and database.
    #[allow(dead_code)] // without the postgres and mysql features
    fn server(
        &mut self,
        socket: Option<&std::path::PathBuf>,
        host: &str,
        port: u16,
        database: Option<&str>,
    ) {
        self.address = Some(socket.map_or_else(|| host.to_owned(), |s| s.display().to_string()));
        self.port = socket.is_none().then_some(port);
        self.namespace = database.filter(|d| !d.is_empty()).map(str::to_owned);
    }

    /// An identity given part by part (the crate's tests).
    #[cfg(test)]
    pub(crate) fn new(
        system: &'static str,
        address: Option<&str>,
        port: Option<u16>,
        namespace: Option<&str>,
    ) -> Self {
        Self {
            system,
            namespace: namespace.map(str::to_owned),
            address: address.map(str::to_owned),
            port,
        }
    }

    /// The conventions' name for a pool that has none:
    /// `server.address:server.port/db.namespace`, the parts that are known
    /// (SQLite: the file name; nothing known: `None`).
    pub(crate) fn default_pool_name(&self) -> Option<String> {
        let mut name = String::new();
        if let Some(a) = &self.address {
            name.push_str(a);
            if let Some(p) = self.port {
                name.push(':');
                name.push_str(&p.to_string());
            }
        }
        if let Some(ns) = &self.namespace {
            if !name.is_empty() {
                name.push('/');
            }
            name.push_str(ns);
        }
        (!name.is_empty()).then_some(name)
    }

    /// `server.port` when it is not the system's default port (the
    /// conventions require it only then).
    pub(crate) fn non_default_port(&self) -> Option<u16> {
        let default = match self.system {
            "postgresql" => 5432,
            "mysql" | "mariadb" => 3306,
            _ => return self.port,
        };
        self.port.filter(|p| *p != default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_name_is_address_port_and_namespace() {
        let id = PoolIdentity::new(
            "postgresql",
            Some("db.internal"),
            Some(6543),
            Some("orders"),
        );
        assert_eq!(
            id.default_pool_name().as_deref(),
            Some("db.internal:6543/orders")
        );
        assert_eq!(id.non_default_port(), Some(6543));
        let std = PoolIdentity::new("postgresql", Some("127.0.0.1"), Some(5432), Some("test"));
        assert_eq!(std.non_default_port(), None);
        assert_eq!(
            std.default_pool_name().as_deref(),
            Some("127.0.0.1:5432/test")
        );
        let my = PoolIdentity::new("mysql", Some("[::1]"), Some(3307), None);
        assert_eq!(my.default_pool_name().as_deref(), Some("[::1]:3307"));
        let sqlite = PoolIdentity::new("sqlite", None, None, Some("/tmp/app.db"));
        assert_eq!(sqlite.default_pool_name().as_deref(), Some("/tmp/app.db"));
        assert_eq!(
            PoolIdentity::new("other_sql", None, None, None).default_pool_name(),
            None
        );
    }

    #[test]
    fn system_names_follow_the_conventions() {
        assert_eq!(system_name("PostgreSQL"), "postgresql");
        assert_eq!(system_name("MySQL"), "mysql");
        assert_eq!(system_name("SQLite"), "sqlite");
        assert_eq!(system_name("Oracle"), "other_sql");
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn read_from_a_real_pool_without_the_password() {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .connect_lazy("sqlite::memory:")
            .expect("lazy");
        let id = PoolIdentity::of(&pool);
        assert_eq!(id.system, "sqlite");
        assert!(id.namespace.is_some() && id.address.is_none(), "{id:?}");
        #[cfg(feature = "postgres")]
        {
            let pg = sqlx::postgres::PgPoolOptions::new()
                .connect_lazy("postgres://app:s3cret@db.internal:6543/orders")
                .expect("lazy");
            let id = PoolIdentity::of(&pg);
            assert_eq!(
                id.default_pool_name().as_deref(),
                Some("db.internal:6543/orders")
            );
            assert!(!format!("{id:?}").contains("s3cret"));
        }
    }
}

use super::*;

#[test]
fn classification_defaults() {
    assert_eq!(classify(&sqlx::Error::RowNotFound), Outcome::Success);
    assert_eq!(classify(&sqlx::Error::PoolTimedOut), Outcome::Failure);
    assert_eq!(
        classify(&sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into())),
        Outcome::Failure
    );
    assert_eq!(
        classify(&sqlx::Error::Protocol("x".into())),
        Outcome::Failure
    );
}

//! TCP_NODELAY on PostgreSQL connections.
//!
//! sqlx 0.9.0 opens its TCP sockets without TCP_NODELAY (a regression, transact-rs/sqlx#4335;
//! fixed upstream by #4336, in no release yet). A statement whose message passes the socket's
//! initial send buffer (16 KiB on Linux: a hundred contacts, a thousand ids) goes out in two
//! writes, and Nagle's algorithm holds the second until the server's delayed ACK: 40 ms for
//! each such statement. Inserting 100,000 contacts took 48 s instead of ~3.
//!
//! Until sqlx sets it again, each new connection finds its own socket — the one whose local
//! port is the port the server sees the client at — among this process's descriptors, and
//! sets it. Remove this module once the sqlx in use sets TCP_NODELAY itself.

use sqlx::PgConnection;

/// Sets TCP_NODELAY on `conn`'s socket, when it is a TCP socket this process can find. Never
/// fails: a connection it cannot tune still works, only slower for large statements.
pub(super) async fn set_on(conn: &mut PgConnection) {
    let ports: Result<(Option<i32>, Option<i32>), sqlx::Error> =
        sqlx::query_as("SELECT inet_client_port(), inet_server_port()")
            .fetch_one(&mut *conn)
            .await;
    let Ok((Some(client_port), Some(server_port))) = ports else {
        // A Unix socket (no ports), or a failing query the pool will see for itself.
        return;
    };
    let (Ok(client_port), Ok(server_port)) =
        (u16::try_from(client_port), u16::try_from(server_port))
    else {
        return;
    };
    if let Err(error) = set_where_ports_are(client_port, server_port) {
        tracing::debug!(%error, "TCP_NODELAY not set on a database connection");
    }
}

#[cfg(target_os = "linux")]
fn set_where_ports_are(local_port: u16, peer_port: u16) -> std::io::Result<()> {
    use std::os::fd::BorrowedFd;

    for entry in std::fs::read_dir("/proc/self/fd")? {
        let Ok(entry) = entry else { continue };
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
        else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        // SAFETY: the descriptor is only borrowed for the calls below and never closed here. If
        // another thread closed it meanwhile, the calls fail with EBADF; if its number was
        // reused, the ports checked below do not match (or set TCP_NODELAY on a TCP socket that
        // is no worse for it).
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&fd);
        let port_of = |address: std::io::Result<socket2::SockAddr>| {
            address
                .ok()
                .and_then(|address| address.as_socket())
                .map(|address| address.port())
        };
        if port_of(socket.local_addr()) == Some(local_port)
            && port_of(socket.peer_addr()) == Some(peer_port)
        {
            return socket.set_tcp_nodelay(true);
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn set_where_ports_are(_local_port: u16, _peer_port: u16) -> std::io::Result<()> {
    Ok(())
}

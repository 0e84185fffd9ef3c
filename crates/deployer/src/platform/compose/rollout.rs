//! Zero-downtime releases on one host: the reverse proxy (HAProxy, compose.yaml's `proxy`) owns
//! the published port and sends requests to every app container whose `/readyz` answers 200.
//! A new release starts beside the running one (`up --scale app=N+1 --no-recreate`), becomes
//! healthy, is seen by the proxy as up, and only then are the old containers stopped: each drains
//! (its `/readyz` turns 503 while it keeps serving for `SHUTDOWN_DELAY`), the proxy takes it out of
//! rotation, and it exits. A release that never gets healthy is removed; the old one never stopped
//! serving.
//!
//! The decisions here are pure (which containers are old, what the proxy's statistics say); the
//! Compose target runs the commands.

use std::collections::HashSet;

/// The proxy's backends that send requests to the app containers (deploy/compose/haproxy.cfg:
/// reads, and writes with their own retry rules): a new container is in rotation when both route
/// to it.
pub const PROXY_BACKENDS: [&str; 2] = ["app", "app-writes"];

/// The containers a release replaces: the app containers running when it was applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rollout {
    /// Ids of the app containers that ran before, still serving until the switch.
    pub old: Vec<String>,
}

/// What `show stat` (the CSV of HAProxy's statistics page) says of one backend server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerState {
    /// `app-1`, `app-2`, ... (the server template's slots).
    pub name: String,
    /// `UP`, `DOWN`, `MAINT`, `UP 1/2` (going down), `DOWN 1/2` (going up), `no check`.
    pub status: String,
    /// `172.18.0.5:8000`; empty for a slot no container fills.
    pub address: String,
}

impl ServerState {
    /// In rotation: the proxy sends it requests.
    pub fn is_up(&self) -> bool {
        self.status == "UP"
    }
}

/// The servers of `backend` in HAProxy's CSV statistics (`/stats;csv`). The header line names
/// the columns (`# pxname,svname,...,status,...,addr,...`), so the order may change between
/// versions; the frontend and backend summary rows are left out.
pub fn parse_stats(csv: &str, backend: &str) -> Vec<ServerState> {
    let mut lines = csv.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let columns: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
    let index = |name: &str| columns.iter().position(|c| *c == name);
    let (Some(proxy), Some(server), Some(status)) =
        (index("pxname"), index("svname"), index("status"))
    else {
        return Vec::new();
    };
    let address = index("addr");
    lines
        .map(|line| line.split(',').collect::<Vec<&str>>())
        .filter(|fields| fields.get(proxy) == Some(&backend))
        .filter(|fields| !matches!(fields.get(server), Some(&"FRONTEND" | &"BACKEND")))
        .map(|fields| ServerState {
            name: fields.get(server).unwrap_or(&"").to_string(),
            status: fields.get(status).unwrap_or(&"").to_string(),
            address: address
                .and_then(|i| fields.get(i))
                .unwrap_or(&"")
                .to_string(),
        })
        .collect()
}

/// Whether the proxy routes to every container at `addresses` (`ip:port`): each one is the
/// address of a server that is up.
pub fn routes_to_all(servers: &[ServerState], addresses: &[String]) -> bool {
    let up: HashSet<&str> = servers
        .iter()
        .filter(|s| s.is_up())
        .map(|s| s.address.as_str())
        .collect();
    !addresses.is_empty() && addresses.iter().all(|a| up.contains(a.as_str()))
}

/// The new release's containers: those running `image` that were not there before.
pub fn new_containers<'a>(
    running: impl IntoIterator<Item = (&'a str, &'a str)>,
    image: &str,
    rollout: &Rollout,
) -> Vec<String> {
    running
        .into_iter()
        .filter(|(id, container_image)| {
            *container_image == image && !rollout.old.iter().any(|o| o == id)
        })
        .map(|(id, _)| id.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first columns of HAProxy 2.6's `show stat`, and `addr` further on, as it prints them.
    const STATS: &str = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo
http,FRONTEND,,,0,3,1024,12,1,2,0,0,0,,,,,OPEN,,,,,,,,,1,2,0,,,,0,0,0,3,,,,0,12,0,0,0,0,,0,3,12,,,0,0,0,0,,,,,,,,,,,,,,,,,,,,,http,,
app,app-1,0,0,0,1,,6,1,2,,0,,0,0,0,0,UP,1,1,0,0,0,40,0,,1,3,1,,6,,2,0,,1,L7OK,200,1,0,6,0,0,0,0,,,,6,0,0,,,,,1,OK,,0,0,0,1,,,,Layer7 check passed,,2,2,3,,,,172.18.0.4:8000,,http,
app,app-2,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN 1/2,1,1,0,0,0,1,1,,1,3,2,,0,,2,0,,0,L7STS,503,1,0,0,0,0,0,0,,,,0,0,0,,,,,-1,Service Unavailable,,0,0,0,0,,,,Layer7 wrong status,,2,2,1,,,,172.18.0.6:8000,,http,
app,app-3,0,0,0,0,,0,0,0,,0,,0,0,0,0,MAINT (resolution),1,1,0,0,0,40,40,,1,3,3,,0,,2,0,,0,,,,0,0,0,0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,,,2,2,0,,,,,,http,
app,BACKEND,0,0,0,1,103,6,1,2,0,0,,0,0,0,0,UP,1,1,0,,0,40,0,,1,3,0,,6,,1,0,,1,,,,0,6,0,0,0,0,,,,6,0,0,0,0,0,0,1,,,0,0,0,1,,,,,,,,,,,,,,http,roundrobin
";

    #[test]
    fn stats_are_read_by_column_name_without_the_summary_rows() {
        let servers = parse_stats(STATS, "app");
        assert_eq!(servers.len(), 3);
        assert_eq!(servers[0].name, "app-1");
        assert!(servers[0].is_up());
        assert_eq!(servers[0].address, "172.18.0.4:8000");
        assert_eq!(servers[1].status, "DOWN 1/2");
        assert!(!servers[1].is_up(), "going up is not up yet");
        assert_eq!(servers[2].status, "MAINT (resolution)");
        assert!(parse_stats(STATS, "other").is_empty());
        assert!(parse_stats("", "app").is_empty());
        assert!(parse_stats("not,a,stats,page\n1,2,3,4", "app").is_empty());
    }

    #[test]
    fn the_switch_waits_until_every_new_container_is_in_rotation() {
        let servers = parse_stats(STATS, "app");
        assert!(routes_to_all(&servers, &["172.18.0.4:8000".to_string()]));
        assert!(
            !routes_to_all(
                &servers,
                &["172.18.0.4:8000".to_string(), "172.18.0.6:8000".to_string()]
            ),
            "172.18.0.6 is still rising"
        );
        assert!(!routes_to_all(&servers, &[]), "no container is no switch");
    }

    #[test]
    fn new_containers_are_those_of_the_image_that_were_not_running_before() {
        let rollout = Rollout {
            old: vec!["old1".to_string()],
        };
        let running = [("old1", "repo:1"), ("new1", "repo:1"), ("new2", "repo:2")];
        assert_eq!(
            new_containers(running, "repo:1", &rollout),
            ["new1"],
            "a redeploy of the same version replaces the old container too"
        );
        assert_eq!(new_containers(running, "repo:2", &rollout), ["new2"]);
    }
}

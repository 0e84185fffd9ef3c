//! Zero-downtime releases on one host: the reverse proxy (HAProxy, compose.yaml's `proxy`) owns
//! the published port and sends requests to every app container whose `/readyz` answers 200.
//! A release runs N app containers (`--replicas`, else [`default_replicas`]). It starts its N
//! beside the M running ones (`up --scale app=M+N --no-recreate`); once all N are healthy and the
//! proxy routes to every one of them (in both backends), the old containers are stopped: each
//! drains (its `/readyz` turns 503 while it keeps serving for `SHUTDOWN_DELAY`), the proxy takes it
//! out of rotation, and it exits. A release of which any container never gets healthy is removed
//! whole; the old ones never stopped serving.
//!
//! The decisions here are pure (how many containers, how much CPU each, which containers are old,
//! what the proxy's statistics say); the Compose target runs the commands.

use std::collections::HashSet;

/// The fewest app containers a release runs by default: with two, a container that crashes or is
/// being replaced leaves another serving.
pub const DEFAULT_MIN_REPLICAS: u32 = 2;
/// The most app containers a release runs by default, however many CPUs the host has: each
/// container's runtime uses the CPUs its limit gives it, so more containers add memory and
/// database connections, not throughput.
pub const DEFAULT_MAX_REPLICAS: u32 = 8;
/// The least CPU an app container is given (compose.yaml's `APP_CPUS`): below it a container that
/// starts, migrates and answers its healthcheck is throttled for seconds.
pub const MIN_APP_CPUS: f64 = 0.25;
/// The most CPUs (and threads) the proxy is given (`PROXY_CPUS`, `PROXY_THREADS`).
pub const MAX_PROXY_CPUS: u32 = 4;

/// The app containers a release runs when `--replicas` is not given: one per CPU of the Docker
/// engine's host (the machine the containers run on, which is not the deployer's when DOCKER_HOST
/// names another engine or Docker Desktop runs a VM), within
/// [`DEFAULT_MIN_REPLICAS`]..=[`DEFAULT_MAX_REPLICAS`], and never more than the proxy can hold
/// during a release (`max`, from [`max_replicas`]).
pub fn default_replicas(engine_cpus: u32, max: u32) -> u32 {
    engine_cpus
        .clamp(DEFAULT_MIN_REPLICAS, DEFAULT_MAX_REPLICAS)
        .min(max)
        .max(1)
}

/// `--replicas` checked against what the proxy's configuration can hold: during a release the old
/// and the new containers run side by side, 2N in all, and each needs a server slot.
pub fn check_replicas(requested: u32, max: u32, config: &str) -> Result<u32, String> {
    if requested == 0 {
        return Err(
            "--replicas 0 would run no app container: use 1 or more (`deployer down` stops an environment)"
                .to_string(),
        );
    }
    if requested > max {
        return Err(format!(
            "--replicas {requested} is more than the proxy can hold: {config} has {} server slots per backend, and a release runs the old and the new containers side by side (2 x {requested}), so at most {max} replicas; use --replicas {max} or fewer, or raise the server-template count there",
            max * 2
        ));
    }
    Ok(requested)
}

/// The server slots of each backend's `server-template` in HAProxy's configuration (`backend` name,
/// slot count), in the order of the file.
pub fn template_slots(config: &str) -> Vec<(String, u32)> {
    let mut backend: Option<&str> = None;
    let mut slots = Vec::new();
    for line in config.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["backend", name, ..] => backend = Some(name),
            [
                "frontend" | "defaults" | "global" | "resolvers" | "listen",
                ..,
            ] => backend = None,
            ["server-template", _prefix, count, ..] => {
                // `server-template app- 16 ...` or a range `app- 1-16`: the count is what matters.
                let count = count.rsplit('-').next().and_then(|n| n.parse::<u32>().ok());
                if let (Some(backend), Some(count)) = (backend, count) {
                    slots.push((backend.to_string(), count));
                }
            }
            _ => {}
        }
    }
    slots
}

/// The most replicas a release can run: half the smallest slot count among the app backends
/// ([`PROXY_BACKENDS`]), since old and new containers fill slots at once during a release.
pub fn max_replicas(config: &str) -> Result<u32, String> {
    let slots = template_slots(config);
    let mut max = u32::MAX;
    for backend in PROXY_BACKENDS {
        let Some((_, count)) = slots.iter().find(|(name, _)| name == backend) else {
            return Err(format!(
                "backend {backend} has no server-template line: the proxy cannot find the app containers"
            ));
        };
        max = max.min(count / 2);
    }
    if max == 0 {
        return Err(
            "the server-template lines hold fewer than 2 servers: a release needs a slot for an old and a new container at least"
                .to_string(),
        );
    }
    Ok(max)
}

/// The CPU limits of a release: compose.yaml's `APP_CPUS` (each app container), `PROXY_CPUS` and
/// `PROXY_THREADS` (HAProxy's `nbthread`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CpuSplit {
    pub app_cpus: f64,
    pub proxy_cpus: u32,
    pub proxy_threads: u32,
}

impl CpuSplit {
    /// The values as compose.yaml reads them (`cpus:` takes a decimal, `nbthread` an integer).
    pub fn variables(&self) -> [(&'static str, String); 3] {
        [
            ("APP_CPUS", format!("{:.2}", self.app_cpus)),
            ("PROXY_CPUS", format!("{}.0", self.proxy_cpus)),
            ("PROXY_THREADS", self.proxy_threads.to_string()),
        ]
    }
}

/// How the engine host's CPUs are shared: the N app containers split all of them (a limit is a
/// ceiling, not a reservation: under load each container gets its share, and one container alone
/// cannot starve the others or the database), at least [`MIN_APP_CPUS`] each. The proxy gets half
/// the CPUs, at least one and at most [`MAX_PROXY_CPUS`], whole ones, with as many threads: HAProxy
/// costs a fraction of what the app costs per request, and with fewer CPUs than the app
/// containers' sum it cannot take the app's share. The proxy's limit depends on the host only, not
/// on N: a release that changes the replica count does not recreate the proxy (which owns the
/// published port).
pub fn cpu_split(engine_cpus: u32, replicas: u32) -> CpuSplit {
    let engine_cpus = engine_cpus.max(1);
    let app = f64::from(engine_cpus) / f64::from(replicas.max(1));
    // Two decimals, rounded down: N containers never add up to more than the host has.
    let app_cpus = ((app * 100.0).floor() / 100.0).max(MIN_APP_CPUS);
    let proxy = engine_cpus.div_ceil(2).clamp(1, MAX_PROXY_CPUS);
    CpuSplit {
        app_cpus,
        proxy_cpus: proxy,
        proxy_threads: proxy,
    }
}

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

    #[test]
    fn the_default_is_one_replica_per_engine_cpu_within_bounds() {
        assert_eq!(default_replicas(1, 8), 2, "one CPU still runs two");
        assert_eq!(default_replicas(2, 8), 2);
        assert_eq!(default_replicas(6, 8), 6);
        assert_eq!(default_replicas(64, 8), DEFAULT_MAX_REPLICAS);
        assert_eq!(default_replicas(6, 4), 4, "never more than the proxy holds");
        assert_eq!(default_replicas(6, 1), 1);
    }

    #[test]
    fn replicas_beyond_the_template_are_refused_naming_the_limit() {
        assert_eq!(check_replicas(3, 8, "haproxy.cfg"), Ok(3));
        assert_eq!(check_replicas(8, 8, "haproxy.cfg"), Ok(8));
        let too_many = check_replicas(9, 8, "deploy/compose/haproxy.cfg").unwrap_err();
        assert!(too_many.contains("at most 8 replicas"), "{too_many}");
        assert!(too_many.contains("16 server slots"), "{too_many}");
        assert!(
            too_many.contains("deploy/compose/haproxy.cfg"),
            "{too_many}"
        );
        assert!(
            check_replicas(0, 8, "haproxy.cfg")
                .unwrap_err()
                .contains("--replicas 0")
        );
    }

    #[test]
    fn template_slots_are_read_per_backend() {
        let config = "frontend http\n    bind :8080\nbackend app from app-servers\n    retries 3\n server-template app- 16 app:8000 check\nbackend app-writes from app-servers\n server-template app- 1-12 app:8000 check\n";
        assert_eq!(
            template_slots(config),
            [("app".to_string(), 16), ("app-writes".to_string(), 12)]
        );
        assert_eq!(max_replicas(config), Ok(6), "the smaller backend decides");
        assert!(
            max_replicas("backend app\n    server-template app- 4 app:8000\n")
                .unwrap_err()
                .contains("app-writes")
        );
        assert!(
            max_replicas(
                "backend app\n server-template a 1 x\nbackend app-writes\n server-template a 1 x\n"
            )
            .is_err()
        );
    }

    #[test]
    fn the_stack_s_haproxy_cfg_holds_two_releases_of_the_most_replicas() {
        let config = include_str!("../../../../../deploy/compose/haproxy.cfg");
        let max = max_replicas(config).unwrap();
        assert!(
            max >= DEFAULT_MAX_REPLICAS,
            "haproxy.cfg holds {max} replicas, the default may ask for {DEFAULT_MAX_REPLICAS}"
        );
    }

    #[test]
    fn app_cpus_split_the_host_and_the_proxy_s_follow_the_host_only() {
        let two = cpu_split(2, 2);
        assert_eq!(two.app_cpus, 1.0);
        assert_eq!((two.proxy_cpus, two.proxy_threads), (1, 1));
        assert_eq!(
            cpu_split(2, 3).app_cpus,
            0.66,
            "rounded down, never above the host"
        );
        assert_eq!(cpu_split(1, 8).app_cpus, MIN_APP_CPUS, "the floor");
        assert_eq!(cpu_split(8, 1).app_cpus, 8.0);
        assert_eq!(cpu_split(8, 4).proxy_cpus, 4);
        assert_eq!(cpu_split(64, 8).proxy_cpus, MAX_PROXY_CPUS);
        assert_eq!(cpu_split(3, 2).proxy_cpus, 2);
        assert_eq!(
            cpu_split(6, 2).proxy_cpus,
            cpu_split(6, 5).proxy_cpus,
            "the replica count never changes the proxy's definition"
        );
        assert_eq!(
            cpu_split(2, 3).variables(),
            [
                ("APP_CPUS", "0.66".to_string()),
                ("PROXY_CPUS", "1.0".to_string()),
                ("PROXY_THREADS", "1".to_string())
            ]
        );
    }

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

//! The standard process metrics (`process_*`, as Prometheus' Go client exports them) and etcd's `os_fd_*`,
//! read from `/proc/self` when scraped.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

#[derive(Default)]
pub struct ProcessMetrics {
    cpu_seconds: Counter<f64, AtomicU64>,
    cpu_seen: Mutex<f64>,
    resident_memory: Gauge,
    virtual_memory: Gauge,
    open_fds: Gauge,
    max_fds: Gauge,
    start_time: Gauge<f64, AtomicU64>,
}

impl ProcessMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register("process_cpu_seconds", "Total user and system CPU time spent in seconds", self.cpu_seconds.clone());
        r.register("process_resident_memory_bytes", "Resident memory size in bytes", self.resident_memory.clone());
        r.register("process_virtual_memory_bytes", "Virtual memory size in bytes", self.virtual_memory.clone());
        r.register("process_open_fds", "Number of open file descriptors", self.open_fds.clone());
        r.register("process_max_fds", "Maximum number of open file descriptors", self.max_fds.clone());
        r.register("os_fd_used", "The number of used file descriptors", self.open_fds.clone());
        r.register("os_fd_limit", "The file descriptor limit", self.max_fds.clone());
        r.register(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            self.start_time.clone(),
        );
    }

    pub fn refresh(&self) {
        let Some(stat) = read_stat() else { return };
        let ticks = clock_ticks();
        let cpu = (stat.utime + stat.stime) as f64 / ticks;
        let mut seen = self.cpu_seen.lock().expect("cpu lock");
        if cpu > *seen {
            self.cpu_seconds.inc_by(cpu - *seen);
            *seen = cpu;
        }
        self.resident_memory.set((stat.rss_pages * page_size()) as i64);
        self.virtual_memory.set(stat.vsize as i64);
        if let Some(boot) = boot_time() {
            self.start_time.set(boot + stat.start_ticks as f64 / ticks);
        }
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(entries.count() as i64);
        }
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes into the struct we own.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            self.max_fds.set(limit.rlim_cur as i64);
        }
    }
}

struct Stat {
    utime: u64,
    stime: u64,
    start_ticks: u64,
    vsize: u64,
    rss_pages: u64,
}

/// `/proc/self/stat`: fields after the command name (which may hold spaces) start at field 3.
fn read_stat() -> Option<Stat> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |number: usize| fields.get(number - 3)?.parse::<u64>().ok();
    Some(Stat {
        utime: field(14)?,
        stime: field(15)?,
        start_ticks: field(22)?,
        vsize: field(23)?,
        rss_pages: field(24)?,
    })
}

fn boot_time() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    text.lines().find_map(|line| line.strip_prefix("btime ")?.trim().parse().ok())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as u64 } else { 4096 }
}

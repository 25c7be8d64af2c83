#!/usr/bin/env bash
# local-cluster.sh -- install and run a real Slurm cluster on this machine
# (munge + MariaDB + slurmdbd + slurmctld + one slurmd per node), for tests and CI.
#
#   slurm/local-cluster.sh start [--nodes N]
#                                   install missing packages, write configs,
#                                   start daemons, wait for idle nodes and a
#                                   completed probe job that sacct lists
#   slurm/local-cluster.sh stop     cancel jobs, stop all daemons by PID file,
#                                   remove the nodes' network namespaces
#   slurm/local-cluster.sh status   print daemon states and sinfo; exit 0 only
#                                   if every daemon is up
#   slurm/local-cluster.sh kill-node NODE
#                                   crash one node: SIGKILL its slurmd, job steps
#                                   and tasks (everything in its namespace);
#                                   'start' brings it back
#
# One node (the default) is this machine itself: slurmd listens on 127.0.0.1.
# With --nodes N >= 2 each node gptfl-n1..N is a slurmd in its own network
# namespace and UTS namespace (its own hostname), with its own address on a
# bridge that exists only on this machine ($SUBNET.0/24: the controller is
# $SUBNET.1, node i is $SUBNET.(10+i)); /etc/hosts maps the node names. No
# namespace has a route anywhere else. Jobs on a node run inside that node's
# namespaces, so cross-node traffic (srun, torch.distributed) really crosses
# the bridge. 'stop' removes the namespaces, the bridge, the host entries and
# the multi-node slurm.conf (whose addresses no longer exist). 'start' without
# --nodes on a running cluster keeps its node count.
#
# No systemd is needed: every daemon is started directly, with its PID file and
# log under the state directory. Needs root for start/stop (re-runs itself via
# sudo when not root and sudo exists). Debian/Ubuntu only (apt, Slurm 22.05).
#
# Environment (all optional):
#   GPTFL_SLURM_STATE          state dir (PID files, logs, spool, MariaDB data)
#                              [/var/run/gptfl-slurm]
#   GPTFL_SLURM_CPUS           CPUs each node advertises [max(nproc, 4)]
#   GPTFL_SLURM_SUBNET         first three octets of the nodes' bridge network
#                              (multi-node only) [10.77.0]
#   GPTFL_SLURM_NODE_TIMEOUT   SlurmdTimeout of a multi-node cluster: seconds
#                              until an unresponsive node is DOWN and its jobs
#                              are requeued [10]
#   GPTFL_SLURM_CLUSTER        ClusterName [gptfl]
#   GPTFL_SLURM_DB_PORT        MariaDB TCP port, bound to 127.0.0.1 [3307]
#   GPTFL_SLURM_DB_PASS        password of the MariaDB user 'slurm' [gptfl-slurm]
#   GPTFL_SLURM_START_TIMEOUT  seconds start waits for node + probe job [60]
#   GPTFL_SLURM_NO_INSTALL=1   never call apt-get; fail if packages are missing
#
# Slurm facts worth knowing: time limits and --signal are only checked every
# 30 s; finished jobs stay visible to squeue/scontrol for MinJobAge=300 s; a
# requeued job restarts after ~cred_expire (10 s) + scheduling (~2 s).
set -euo pipefail

PROG=local-cluster
SELF=$(readlink -f "${BASH_SOURCE[0]}")

STATE=${GPTFL_SLURM_STATE:-/var/run/gptfl-slurm}
CLUSTER=${GPTFL_SLURM_CLUSTER:-gptfl}
DB_PORT=${GPTFL_SLURM_DB_PORT:-3307}
DB_PASS=${GPTFL_SLURM_DB_PASS:-gptfl-slurm}
DB_NAME=slurm_acct_db
START_TIMEOUT=${GPTFL_SLURM_START_TIMEOUT:-60}
PARTITION=debug
SUBNET=${GPTFL_SLURM_SUBNET:-10.77.0}
NODE_TIMEOUT=${GPTFL_SLURM_NODE_TIMEOUT:-10}
NODE_PREFIX=gptfl-n
BRIDGE=gptfl-br0
CTL_ADDR=$SUBNET.1
HOSTS_FILE=/etc/hosts
HOSTS_BEGIN="# >>> gptfl local-cluster nodes"
HOSTS_END="# <<< gptfl local-cluster nodes"
NODES=   # set by main: --nodes, else the last start's count, else 1

SLURM_CONF=/etc/slurm/slurm.conf
SLURMDBD_CONF=/etc/slurm/slurmdbd.conf
CGROUP_CONF=/etc/slurm/cgroup.conf
MUNGE_SOCKET=/run/munge/munge.socket.2

LOG=$STATE/log
DB_DIR=$STATE/mysql
DB_RUN=$STATE/mariadb        # owned by mysql: socket + PID file
DB_SOCK=$DB_RUN/mysqld.sock

PACKAGES=(munge mariadb-server slurmdbd slurmctld slurmd slurm-client iproute2)

say() { echo "$PROG: $*"; }
warn() { echo "$PROG: warning: $*" >&2; }

# die MESSAGE [LOGFILE...]: one error line on stderr, then the tail of each log.
die() {
    local msg=$1 f
    shift
    echo "$PROG: error: $msg" >&2
    for f in "$@"; do
        if [[ -s $f ]]; then
            echo "---- last lines of $f ----" >&2
            tail -n 25 "$f" >&2 || true
        fi
    done
    exit 1
}

usage() {
    cat >&2 <<EOF
usage: $(basename "$0") start [--nodes N] | stop | status | kill-node NODE

  start      install missing packages, start munged, MariaDB, slurmdbd,
             slurmctld and a slurmd per node, and wait until every node is idle
             and a probe job on all nodes has completed and is listed by sacct
             (idempotent; restarts a killed node). --nodes N >= 2: N nodes, each
             in its own network namespace [default: the running cluster's, else 1]
  stop       cancel remaining jobs, stop all daemons started by 'start' and
             remove the nodes' namespaces
  status     show each daemon's state and sinfo; exit 0 if all are up, else 1
  kill-node  crash NODE (SIGKILL everything in its namespace) for failure tests

state directory: \$GPTFL_SLURM_STATE (now $STATE)
EOF
}

# ---------------------------------------------------------------- daemons ---

# A daemon is named by its program, except a namespaced node's slurmd:
# slurmd@NODE (its PID file, log and spool carry the node name, as slurm.conf's
# %n does).
multi_node() { ((NODES > 1)); }

node_names() {
    local i
    if multi_node; then
        for ((i = 1; i <= NODES; i++)); do echo "$NODE_PREFIX$i"; done
    else
        hostname -s
    fi
}

node_addr() { echo "$SUBNET.$((10 + ${1#"$NODE_PREFIX"}))"; }

slurmd_daemons() {
    local node
    if multi_node; then
        for node in $(node_names); do echo "slurmd@$node"; done
    else
        echo slurmd
    fi
}

# slurmd_logs: the log of every slurmd of this cluster (for error reports).
slurmd_logs() {
    local d
    for d in $(slurmd_daemons); do logfile_of "$d"; done
}

# netns_slurmds: the slurmd daemon names of the node namespaces that exist now
# (also those of an earlier, larger cluster).
netns_slurmds() {
    local node
    for node in $(our_netns); do echo "slurmd@$node"; done
}

# Start order; stop runs in reverse.
daemons() { echo munged mariadbd slurmdbd slurmctld $(slurmd_daemons); }

pidfile_of() {
    case $1 in
        munged) echo "$STATE/munge/munged.pid" ;;
        mariadbd) echo "$DB_RUN/mariadbd.pid" ;;
        slurmd@*) echo "$STATE/slurmd-${1#slurmd@}.pid" ;;
        *) echo "$STATE/$1.pid" ;;
    esac
}

logfile_of() {
    case $1 in
        mariadbd) echo "$LOG/mariadbd.log" ;;
        slurmd@*) echo "$LOG/slurmd-${1#slurmd@}.log" ;;
        *) echo "$LOG/$1.log" ;;
    esac
}

# pid_of NAME: print the PID of our running daemon NAME, or fail (stale or
# missing PID file). The process name is checked to survive PID reuse.
pid_of() {
    local name=$1 prog=${1%@*} pf pid comm
    pf=$(pidfile_of "$name")
    [[ -r $pf ]] || return 1
    pid=$(tr -dc '0-9' <"$pf" 2>/dev/null || true)
    [[ -n $pid ]] && pid_alive "$pid" || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
    case $comm in
        "$prog" | "$prog"-wlm | mysqld) echo "$pid" ;;
        *) return 1 ;;
    esac
}

alive() { pid_of "$1" >/dev/null; }

# pid_alive PID: the process exists and is not a zombie (a killed daemon can
# linger as a zombie until init reaps it).
pid_alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != [ZX] ]]
}

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

# wait_for SECONDS CMD...: poll CMD every 0.2 s until it succeeds.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

STOPPED=()   # daemons stop_daemon has stopped in this run

# stop_daemon NAME...: SIGTERM each by PID file (together), wait up to 30 s
# for all to exit, then SIGKILL the stragglers. Each takes ~2 s to exit.
stop_daemon() {
    local name pid i names=() pids=()
    for name in "$@"; do
        if pid=$(pid_of "$name"); then
            kill -TERM "$pid" 2>/dev/null || true
            names+=("$name")
            pids+=("$pid")
        else
            rm -f "$(pidfile_of "$name")"
        fi
    done
    for ((i = 0; i < 150; i++)); do
        running "${pids[@]}" || break
        sleep 0.2
    done
    for i in "${!pids[@]}"; do
        if pid_alive "${pids[i]}"; then
            warn "${names[i]} (pid ${pids[i]}) ignored SIGTERM for 30 s, sending SIGKILL"
            kill -KILL "${pids[i]}" 2>/dev/null || true
            sleep 0.5
        fi
        rm -f "$(pidfile_of "${names[i]}")"
        STOPPED+=("${names[i]}")
        say "stopped ${names[i]} (pid ${pids[i]})"
    done
}

# running PID...: true if any of the PIDs is still alive.
running() {
    local p
    for p in "$@"; do
        pid_alive "$p" && return 0
    done
    return 1
}

# --------------------------------------------------------------- install ----

pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

install_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        pkg_installed "$p" || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    if [[ ${GPTFL_SLURM_NO_INSTALL:-0} == 1 ]]; then
        die "packages missing and GPTFL_SLURM_NO_INSTALL=1: ${missing[*]}"
    fi
    command -v apt-get >/dev/null || die "apt-get not found; install by hand: ${missing[*]}"
    say "installing packages: ${missing[*]}"
    mkdir -p "$LOG"
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends)
    if ! "${apt[@]}" "${missing[@]}" >"$LOG/apt.log" 2>&1; then
        say "apt-get install failed; running apt-get update and retrying"
        apt-get update >>"$LOG/apt.log" 2>&1 || die "apt-get update failed" "$LOG/apt.log"
        "${apt[@]}" "${missing[@]}" >>"$LOG/apt.log" 2>&1 ||
            die "apt-get install failed" "$LOG/apt.log"
    fi
}

# ---------------------------------------------------------------- config ----

CONF_CHANGED=0   # slurm.conf content changed in this run
DBD_CHANGED=0    # slurmdbd.conf content changed in this run

# install_file DEST MODE: install stdin as DEST (root-owned) if it differs;
# return 0 if the file changed.
install_file() {
    local dest=$1 mode=$2 tmp
    tmp=$(mktemp "$dest.XXXXXX")
    cat >"$tmp"
    chmod "$mode" "$tmp"
    chown root:root "$tmp"
    if [[ -f $dest ]] && cmp -s "$tmp" "$dest"; then
        rm -f "$tmp"
        chmod "$mode" "$dest"
        chown root:root "$dest"
        return 1
    fi
    mv -f "$tmp" "$dest"
    return 0
}

write_configs() {
    local host ncpu cpus mem_total realmem
    host=$(hostname -s)
    ncpu=$(nproc)
    cpus=${GPTFL_SLURM_CPUS:-$((ncpu > 4 ? ncpu : 4))}
    [[ $cpus =~ ^[1-9][0-9]*$ ]] || die "GPTFL_SLURM_CPUS must be a positive integer, got '$cpus'"
    mem_total=$(free -m | awk '/^Mem:/ {print $2}')
    # A bit below the total, so slurmd never reports less than configured.
    realmem=$((mem_total - mem_total / 20))
    ((realmem > 256)) || realmem=256

    mkdir -p /etc/slurm
    if [[ -e $CGROUP_CONF ]] && ! grep -q 'gptfl local-cluster' "$CGROUP_CONF"; then
        warn "moving $CGROUP_CONF aside to $CGROUP_CONF.gptfl-disabled (no cgroup plugins here)"
        mv -f "$CGROUP_CONF" "$CGROUP_CONF.gptfl-disabled"
    fi

    # One node: this machine at 127.0.0.1. Several: namespaced nodes on the
    # bridge, the controller and slurmdbd on its host side (reachable from the
    # root namespace and from every node); each slurmd's files carry its name.
    local ctl_addr=127.0.0.1 what node node_lines="" nodes_expr slurmd_timeout=60 slurmd_files
    if multi_node; then
        ctl_addr=$CTL_ADDR
        slurmd_timeout=$NODE_TIMEOUT
        what="$NODES-node test cluster in network namespaces ($SUBNET.0/24), $cpus CPUs advertised each ($ncpu real), ${realmem} MB"
        for node in $(node_names); do
            node_lines+="NodeName=$node NodeAddr=$(node_addr "$node") NodeHostname=$node CPUs=$cpus RealMemory=$realmem State=UNKNOWN"$'\n'
        done
        nodes_expr="$NODE_PREFIX[1-$NODES]"
        slurmd_files="SlurmdSpoolDir=$STATE/slurmd-%n
SlurmdPidFile=$STATE/slurmd-%n.pid
SlurmdLogFile=$LOG/slurmd-%n.log"
    else
        what="one-node test cluster: $host, $cpus CPUs advertised ($ncpu real), ${realmem} MB"
        node_lines="NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$realmem State=UNKNOWN"$'\n'
        nodes_expr=$host
        slurmd_files="SlurmdSpoolDir=$STATE/slurmd
SlurmdPidFile=$(pidfile_of slurmd)
SlurmdLogFile=$(logfile_of slurmd)"
    fi

    install_file "$SLURM_CONF" 644 <<EOF && CONF_CHANGED=1 || true
# Generated by gptfl local-cluster (slurm/local-cluster.sh); rewritten on every
# start. $what.
ClusterName=$CLUSTER
SlurmctldHost=$host($ctl_addr)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
# Short credential lifetime: a requeued job may restart after ~10 s, not 120 s.
AuthInfo=cred_expire=10
StateSaveLocation=$STATE/slurmctld
SlurmctldPidFile=$(pidfile_of slurmctld)
SlurmctldLogFile=$(logfile_of slurmctld)
$slurmd_files
SlurmctldDebug=info
SlurmdDebug=info
# Containers: no cgroup plugins.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$ctl_addr
AccountingStoragePort=6819
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=2
# A job whose dependency can never be satisfied is cancelled, not left pending.
DependencyParameters=kill_invalid_depend
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
# A node that was DOWN (not responding, e.g. killed) is usable again as soon
# as its slurmd registers; batch jobs are requeued when their node fails.
ReturnToService=2
JobRequeue=1
PreemptType=preempt/none
MailProg=/bin/true
SlurmctldTimeout=30
# How long a silent node stays up before it is DOWN and its jobs requeued.
SlurmdTimeout=$slurmd_timeout
MessageTimeout=10
MinJobAge=300
KillWait=5
InactiveLimit=0
Waittime=0
${node_lines}PartitionName=$PARTITION Nodes=$nodes_expr Default=YES MaxTime=INFINITE State=UP
EOF

    # Mode 600, owned by SlurmUser (root).
    install_file "$SLURMDBD_CONF" 600 <<EOF && DBD_CHANGED=1 || true
# Generated by gptfl local-cluster (slurm/local-cluster.sh); rewritten on every start.
AuthType=auth/munge
DbdHost=$host
DbdAddr=$ctl_addr
DbdPort=6819
SlurmUser=root
PidFile=$(pidfile_of slurmdbd)
LogFile=$(logfile_of slurmdbd)
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=$DB_NAME
EOF
}

# ------------------------------------------------------------------ start ---

prepare_dirs() {
    local node
    mkdir -p "$STATE" "$LOG" "$STATE/slurmctld" "$STATE/slurmd" "$STATE/munge"
    for node in $(node_names); do mkdir -p "$STATE/slurmd-$node"; done
    chmod 755 "$STATE" "$LOG"
    chown munge:munge "$STATE/munge"
    chmod 755 "$STATE/munge"
    chmod -f 644 "$(pidfile_of mariadbd)" "$(pidfile_of munged)" || true
    mkdir -p /run/munge
    chown munge:munge /run/munge
    chmod 755 /run/munge
    mkdir -p "$DB_RUN"
    chown mysql:mysql "$DB_RUN"
    chmod 755 "$DB_RUN"
    touch "$(logfile_of munged)" "$(logfile_of mariadbd)"
    chown munge:munge "$(logfile_of munged)"
    chown mysql:mysql "$(logfile_of mariadbd)"
    chmod 640 "$(logfile_of munged)" "$(logfile_of mariadbd)"
}

start_munged() {
    if alive munged; then return 0; fi
    rm -f "$(pidfile_of munged)"
    if munge_works; then
        # Someone else's munged (e.g. a systemd unit) already serves the socket.
        say "munged: using the already running munged on $MUNGE_SOCKET"
        return 0
    fi
    if [[ ! -s /etc/munge/munge.key ]]; then
        mungekey --create --keyfile=/etc/munge/munge.key >>"$LOG/munged.stderr" 2>&1 ||
            die "cannot create /etc/munge/munge.key" "$LOG/munged.stderr"
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    runuser -u munge -- /usr/sbin/munged --force \
        --pid-file="$(pidfile_of munged)" --log-file="$(logfile_of munged)" \
        >>"$LOG/munged.stderr" 2>&1 ||
        die "munged failed to start" "$LOG/munged.stderr" "$(logfile_of munged)"
    wait_for 15 munge_works ||
        die "munged does not answer on $MUNGE_SOCKET" "$(logfile_of munged)"
    say "started munged (pid $(pid_of munged || echo ?))"
}

db_ping() { mariadb-admin --no-defaults --socket="$DB_SOCK" -uroot ping >/dev/null 2>&1; }

db_sql() { mariadb --no-defaults --socket="$DB_SOCK" -uroot -e "$1"; }

start_mariadb() {
    if alive mariadbd && db_ping; then return 0; fi
    local pid
    if pid=$(pid_of mariadbd); then
        # Alive but not answering: give it a moment, then restart it.
        wait_for 10 db_ping && return 0
        stop_daemon mariadbd
    fi
    rm -f "$(pidfile_of mariadbd)" "$DB_SOCK"
    if [[ ! -d $DB_DIR/mysql ]]; then
        say "initialising MariaDB data directory $DB_DIR"
        mkdir -p "$DB_DIR"
        chown mysql:mysql "$DB_DIR"
        mariadb-install-db --no-defaults --user=mysql --datadir="$DB_DIR" \
            --auth-root-authentication-method=socket --skip-test-db \
            >"$LOG/mariadb-install-db.log" 2>&1 ||
            die "mariadb-install-db failed" "$LOG/mariadb-install-db.log"
    fi
    # --no-defaults: ignore /etc/mysql so a system MariaDB setup cannot interfere.
    setsid /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$DB_DIR" \
        --socket="$DB_SOCK" --pid-file="$(pidfile_of mariadbd)" \
        --log-error="$(logfile_of mariadbd)" --port="$DB_PORT" \
        --bind-address=127.0.0.1 --skip-name-resolve --skip-log-bin \
        --innodb-buffer-pool-size=512M --innodb-log-file-size=64M \
        --innodb-lock-wait-timeout=900 --max-allowed-packet=64M \
        </dev/null >>"$LOG/mariadbd.stderr" 2>&1 &
    pid=$!
    disown "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 60))
    until db_ping; do
        pid_alive "$pid" ||
            die "MariaDB exited during start-up" "$(logfile_of mariadbd)" "$LOG/mariadbd.stderr"
        ((SECONDS < deadline)) ||
            die "MariaDB did not come up in 60 s" "$(logfile_of mariadbd)" "$LOG/mariadbd.stderr"
        sleep 0.2
    done
    wait_for 5 alive mariadbd || die "MariaDB wrote no PID file" "$(logfile_of mariadbd)"
    chmod 644 "$(pidfile_of mariadbd)"   # so 'status' works for non-root users
    say "started mariadbd (pid $(pid_of mariadbd), port $DB_PORT)"
}

setup_database() {
    local q="'" u
    local sql="CREATE DATABASE IF NOT EXISTS $DB_NAME;"
    for u in localhost 127.0.0.1; do
        sql+=" CREATE USER IF NOT EXISTS 'slurm'@'$u' IDENTIFIED BY $q$DB_PASS$q;"
        sql+=" ALTER USER 'slurm'@'$u' IDENTIFIED BY $q$DB_PASS$q;"
        sql+=" GRANT ALL PRIVILEGES ON $DB_NAME.* TO 'slurm'@'$u';"
    done
    sql+=" FLUSH PRIVILEGES;"
    db_sql "$sql" >>"$LOG/mariadb-setup.log" 2>&1 ||
        die "creating the accounting database/user failed" "$LOG/mariadb-setup.log"
}

sacctmgr_ok() { sacctmgr -n -P list cluster format=cluster >/dev/null 2>&1; }

start_slurmdbd() {
    if alive slurmdbd && ((DBD_CHANGED)); then
        say "slurmdbd.conf changed; restarting slurmdbd"
        stop_daemon slurmdbd
    fi
    if ! alive slurmdbd; then
        rm -f "$(pidfile_of slurmdbd)"
        /usr/sbin/slurmdbd </dev/null >>"$LOG/slurmdbd.stderr" 2>&1 ||
            die "slurmdbd failed to start" "$LOG/slurmdbd.stderr" "$(logfile_of slurmdbd)"
        wait_for 30 alive slurmdbd ||
            die "slurmdbd exited" "$LOG/slurmdbd.stderr" "$(logfile_of slurmdbd)"
        say "started slurmdbd (pid $(pid_of slurmdbd))"
    fi
    wait_for 60 sacctmgr_ok ||
        die "slurmdbd does not answer sacctmgr" "$(logfile_of slurmdbd)"
    if ! sacctmgr -n -P list cluster format=cluster 2>/dev/null | grep -qx "$CLUSTER"; then
        sacctmgr -i add cluster "$CLUSTER" >>"$LOG/sacctmgr.log" 2>&1 ||
            die "sacctmgr add cluster $CLUSTER failed" "$LOG/sacctmgr.log" "$(logfile_of slurmdbd)"
        say "registered cluster $CLUSTER with slurmdbd"
    fi
}

ctld_ok() { scontrol ping 2>/dev/null | grep -q 'is UP'; }

start_slurm_daemon() {
    local name=$1 node
    if alive "$name" && ((CONF_CHANGED)); then
        say "slurm.conf changed; restarting $name"
        stop_daemon "$name"
    fi
    if ! alive "$name"; then
        rm -f "$(pidfile_of "$name")"
        case $name in
            slurmd@*)
                # The node's own network and UTS namespaces: its address, its hostname
                # (torch.distributed/gloo binds to the address the hostname resolves to).
                node=${name#slurmd@}
                # nsenter, not 'ip netns exec': that remounts /sys without cgroupfs,
                # which slurmd needs to start.
                nsenter --net="/run/netns/$node" -- unshare --uts -- sh -c \
                    "hostname '$node' && exec /usr/sbin/slurmd -N '$node'" \
                    </dev/null >>"$LOG/slurmd-$node.stderr" 2>&1 ||
                    die "$name failed to start" "$LOG/slurmd-$node.stderr" "$(logfile_of "$name")"
                ;;
            *)
                "/usr/sbin/$name" </dev/null >>"$LOG/$name.stderr" 2>&1 ||
                    die "$name failed to start" "$LOG/$name.stderr" "$(logfile_of "$name")"
                ;;
        esac
        wait_for 30 alive "$name" ||
            die "$name exited" "$LOG/${name/@/-}.stderr" "$(logfile_of "$name")"
        say "started $name (pid $(pid_of "$name"))"
    fi
}

# ---------------------------------------------------------------- network ---
# Multi-node only: a bridge on the host side, a namespace per node joined to
# it by a veth pair, node names in /etc/hosts. Traffic stays on this machine.

have_netns() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$1"; }

veth_of() { echo "gptfl-v${1#"$NODE_PREFIX"}"; }

# our_netns: the gptfl node namespaces that exist now.
our_netns() { ip netns list 2>/dev/null | awk '{print $1}' | grep "^$NODE_PREFIX[0-9][0-9]*\$" || true; }

setup_network() {
    local node addr veth
    [[ $SUBNET =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] ||
        die "GPTFL_SLURM_SUBNET must be three octets like 10.77.0, got '$SUBNET'"
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link add "$BRIDGE" type bridge || die "cannot create bridge $BRIDGE (needs CAP_NET_ADMIN)"
    fi
    ip addr replace "$CTL_ADDR/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    for node in $(node_names); do
        addr=$(node_addr "$node")
        veth=$(veth_of "$node")
        have_netns "$node" || ip netns add "$node" || die "cannot create network namespace $node"
        if ! ip link show "$veth" >/dev/null 2>&1; then
            ip link add "$veth" type veth peer name eth0 netns "$node" ||
                die "cannot create veth pair $veth for $node"
        fi
        ip link set "$veth" master "$BRIDGE" up
        ip -n "$node" addr replace "$addr/24" dev eth0
        ip -n "$node" link set eth0 up
        ip -n "$node" link set lo up
    done
    remove_nodes_beyond "$NODES"
    write_hosts
}

# write_hosts: the node names in /etc/hosts, in one marked block that 'stop'
# removes again.
write_hosts() {
    local node lines=""
    for node in $(node_names); do lines+="$(node_addr "$node") $node"$'\n'; done
    set_hosts_block "$lines"
}

# set_hosts_block [LINES]: /etc/hosts without our block, then LINES (if any)
# between the markers; written only when that changes the file.
set_hosts_block() {
    local lines=${1:-} tmp
    tmp=$(mktemp)
    sed "/^$HOSTS_BEGIN\$/,/^$HOSTS_END\$/d" "$HOSTS_FILE" >"$tmp"
    [[ -z $lines ]] || printf '%s\n%s%s\n' "$HOSTS_BEGIN" "$lines" "$HOSTS_END" >>"$tmp"
    # Rewrite in place: /etc/hosts may be a bind mount that cannot be replaced.
    cmp -s "$tmp" "$HOSTS_FILE" || cat "$tmp" >"$HOSTS_FILE"
    rm -f "$tmp"
}

# remove_nodes_beyond K: stop and delete namespaced nodes numbered above K.
remove_nodes_beyond() {
    local keep=$1 node
    for node in $(our_netns); do
        ((${node#"$NODE_PREFIX"} > keep)) || continue
        stop_daemon "slurmd@$node"
        kill_netns "$node"
        ip link del "$(veth_of "$node")" 2>/dev/null || true
        ip netns del "$node" 2>/dev/null || true
        say "removed node $node"
    done
}

# kill_netns NODE: SIGKILL every process in the node's network namespace
# (slurmd, slurmstepd, job tasks), until none is left.
kill_netns() {
    local node=$1 pids i
    for ((i = 0; i < 50; i++)); do
        pids=$(ip netns pids "$node" 2>/dev/null | tr '\n' ' ')
        [[ -n ${pids// /} ]] || return 0
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
        sleep 0.2
    done
    warn "processes left in namespace $node: $pids"
}

teardown_network() {
    remove_nodes_beyond 0
    ip link del "$BRIDGE" 2>/dev/null || true
    set_hosts_block
}

# ------------------------------------------------------------------ nodes ---

# node_states: "NODE STATE" for every node of the partition.
node_states() { sinfo -h -N -p "$PARTITION" -o '%N %t' 2>/dev/null; }

# nodes_idle: every configured node is usable; DOWN/DRAIN nodes (a leftover
# from an earlier run or a killed node whose slurmd is back) are resumed.
nodes_idle() {
    local node st ok=0 seen=0
    while read -r node st; do
        [[ -n $node ]] || continue
        seen=$((seen + 1))
        case $st in
            idle | mix | alloc) ;;
            down | drain | drng | drained | fail | inval)
                scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true
                ok=1
                ;;
            *) ok=1 ;;
        esac
    done < <(node_states)
    ((seen == NODES && ok == 0))
}

all_allocated() { [[ -z $(node_states | awk '$2 != "alloc"') ]]; }

probe_job() {
    local id st deadline=$1
    # One task on every node: srun across the nodes (through the bridge when namespaced).
    id=$(sbatch --parsable -p "$PARTITION" -J gptfl-probe -o /dev/null -e /dev/null \
        --chdir=/tmp -t 1 -N "$NODES" --ntasks-per-node=1 --wrap 'srun true' 2>>"$LOG/probe.log") ||
        die "probe sbatch failed" "$LOG/probe.log" "$(logfile_of slurmctld)"
    id=${id%%;*}
    while :; do
        st=$(sacct -n -X -P -j "$id" -o State 2>/dev/null | head -n 1 || true)
        case $st in
            COMPLETED)
                echo "$id"
                return 0
                ;;
            FAILED* | CANCELLED* | TIMEOUT* | NODE_FAIL* | OUT_OF_ME* | BOOT_FAIL*)
                scancel "$id" 2>/dev/null || true   # a NODE_FAIL probe gets requeued
                die "probe job $id ended $st" $(slurmd_logs) "$(logfile_of slurmctld)"
                ;;
        esac
        ((SECONDS < deadline)) || scancel "$id" 2>/dev/null || true
        ((SECONDS < deadline)) ||
            die "probe job $id not COMPLETED in sacct within ${START_TIMEOUT}s (state '${st:-none}', squeue: $(squeue -h -j "$id" -o %T 2>/dev/null || true))" \
                "$(logfile_of slurmctld)" $(slurmd_logs) "$(logfile_of slurmdbd)"
        sleep 0.5
    done
}

cmd_start() {
    local t0=$SECONDS deadline id d
    # Daemons inherit these: do not pin the caller's directory, keep files readable.
    cd /
    umask 022
    install_packages
    prepare_dirs
    if multi_node; then
        stop_daemon slurmd   # a one-node cluster's slurmd, from an earlier start
        setup_network
    else
        stop_daemon $(netns_slurmds)
        teardown_network
    fi
    write_configs
    echo "$NODES" >"$STATE/nodes"
    start_munged
    start_mariadb
    setup_database
    start_slurmdbd
    start_slurm_daemon slurmctld
    deadline=$((SECONDS + START_TIMEOUT))
    wait_for "$START_TIMEOUT" ctld_ok ||
        die "slurmctld does not answer 'scontrol ping'" "$(logfile_of slurmctld)"
    for d in $(slurmd_daemons); do start_slurm_daemon "$d"; done
    until nodes_idle; do
        ((SECONDS < deadline)) ||
            die "nodes not idle within ${START_TIMEOUT}s: $(node_states | tr '\n' ' ')" \
                $(slurmd_logs) "$(logfile_of slurmctld)"
        sleep 0.3
    done
    if all_allocated; then
        # Every CPU is taken by running jobs: a probe would only queue.
        sacct -n -X -j 1 >/dev/null || die "sacct does not work" "$(logfile_of slurmdbd)"
        say "$NODES node(s) fully allocated (jobs running), probe job skipped ($((SECONDS - t0)) s)"
        return 0
    fi
    id=$(probe_job "$deadline")
    say "$NODES node(s) idle ($(node_names | tr '\n' ' ' | sed 's/ $//')), probe job $id completed ($((SECONDS - t0)) s)"
}

cmd_kill_node() {
    local node=$1
    multi_node || die "kill-node needs a multi-node cluster (start --nodes N with N >= 2)"
    have_netns "$node" || die "no node '$node'; nodes: $(node_names | tr '\n' ' ')"
    kill_netns "$node"
    rm -f "$(pidfile_of "slurmd@$node")"
    say "killed node $node (its slurmd, job steps and tasks); 'start' brings it back"
}

# ------------------------------------------------------------------- stop ---

no_active_jobs() { [[ -z $(squeue -h -t running,completing -o %A 2>/dev/null) ]]; }

cancel_jobs() {
    alive slurmctld || return 0
    local jobs
    jobs=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ' || true)
    [[ -n ${jobs// /} ]] || return 0
    say "cancelling jobs: $jobs"
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null || true
    # Give the job steps a moment to go away before slurmd is stopped.
    wait_for 15 no_active_jobs || true
}

# live_pids NAME: PIDs of running (non-zombie) processes called NAME.
live_pids() {
    local p out=()
    for p in $(pgrep -x "$1" || true); do
        pid_alive "$p" && out+=("$p")
    done
    echo "${out[*]}"
}

# no_procs NAME...: pgrep finds none of them, zombies included.
no_procs() {
    local n
    for n in "$@"; do
        pgrep -x "$n" >/dev/null && return 1
    done
    return 0
}

cmd_stop() {
    local name pids leftover=()
    cancel_jobs
    # Reverse start order; daemons in one call go down together.
    stop_daemon slurmd $(netns_slurmds) slurmctld
    stop_daemon slurmdbd
    stop_daemon mariadbd munged
    if [[ -n $(our_netns) ]] || ip link show "$BRIDGE" >/dev/null 2>&1; then
        teardown_network
        # Its addresses are gone: no client command may try them (they would
        # be routed off this machine). 'start' writes a config again.
        if grep -q "^SlurmctldHost=.*($CTL_ADDR)" "$SLURM_CONF" 2>/dev/null; then
            rm -f "$SLURM_CONF"
        fi
        say "removed the nodes' namespaces, $BRIDGE and their /etc/hosts entries"
    fi
    # Exited daemons are zombies until init reaps them (can take a few
    # seconds in containers); wait so 'pgrep -x' is clean when we return.
    ((${#STOPPED[@]} == 0)) || wait_for 15 no_procs "${STOPPED[@]}" || true
    for name in slurmd slurmctld slurmdbd; do
        pids=$(live_pids "$name")
        [[ -z $pids ]] || leftover+=("$name($pids)")
    done
    if ((${#leftover[@]})); then
        echo "$PROG: error: still running, not started by this script (no PID file in $STATE): ${leftover[*]}" >&2
        exit 1
    fi
    say "stopped"
}

# ----------------------------------------------------------------- status ---

cmd_status() {
    local name pid rc=0
    for name in $(daemons); do
        if pid=$(pid_of "$name"); then
            printf '%-17s running (pid %s)\n' "$name:" "$pid"
        elif [[ $name == munged ]] && munge_works; then
            printf '%-17s running (not started by %s)\n' "$name:" "$PROG"
        else
            printf '%-17s stopped\n' "$name:"
            rc=1
        fi
    done
    if alive slurmctld; then
        sinfo 2>&1 || rc=1
    fi
    return "$rc"
}

# ------------------------------------------------------------------- main ---

need_root() {
    ((EUID == 0)) && return 0
    if command -v sudo >/dev/null; then
        exec sudo -E bash "$SELF" "$@"
    fi
    die "must run as root"
}

# node_count [N]: N when given (checked), else the running cluster's count, else 1.
node_count() {
    local n=${1:-}
    if [[ -z $n && -r $STATE/nodes ]]; then
        n=$(tr -dc '0-9' <"$STATE/nodes")
    fi
    n=${n:-1}
    [[ $n =~ ^[1-9][0-9]?$ ]] || { echo "$PROG: error: --nodes must be a whole number from 1 to 99, got '$n'" >&2; exit 2; }
    echo "$n"
}

main() {
    (($# >= 1)) || { usage; exit 2; }
    local cmd=$1 nodes=""
    shift
    case $cmd in
        start)
            case "$#:${1:-}" in
                0:) ;;
                2:--nodes) nodes=$2 ;;
                1:--nodes=*) nodes=${1#--nodes=} ;;
                *) usage; exit 2 ;;
            esac
            NODES=$(node_count "$nodes")
            need_root start "--nodes=$NODES"
            cmd_start
            ;;
        stop)
            (($# == 0)) || { usage; exit 2; }
            NODES=$(node_count)
            need_root stop
            cmd_stop
            rm -f "$STATE/nodes"
            ;;
        status)
            (($# == 0)) || { usage; exit 2; }
            NODES=$(node_count)
            cmd_status
            ;;
        kill-node)
            (($# == 1)) || { usage; exit 2; }
            NODES=$(node_count)
            need_root kill-node "$1"
            cmd_kill_node "$1"
            ;;
        -h | --help | help) usage; exit 0 ;;
        *) echo "$PROG: unknown subcommand '$cmd'" >&2; usage; exit 2 ;;
    esac
}

main "$@"

#!/usr/bin/env bash
# The power-cut guest's work, run by /init. The kernel command line says
# what to do this boot, in this order:
#
#   pc.setup=PHASE,...  for each phase: make its template on the disk with
#                       serial s-PHASE (setup steps, sync, unmount), copy it
#                       to c-PHASE and run the phase's operation there to
#                       the end, traced: the host learns its steps
#   pc.check=PHASE:RC   the disk `check` was cut during PHASE's operation
#                       (RC: its exit code if it had finished, else `cut`):
#                       recover as at boot, check, install once more
#   pc.cut=PHASE:DATA   run PHASE's operation on the disk `cut` (mounted with
#                       data=DATA), traced, then wait for the host to cut
#                       the power
#   pc.log=PHASE:DATA   run PHASE's operation on the disk `cut` through
#                       dm-log-writes, every write and flush logged onto the
#                       disk `log` (the host replays it to flush points)
#
# Lines for the host start with @@; the traced operation's syscalls
# (strace -o /dev/ttyS0) are the markers the host cuts at.
set -u
export PATH=/pc/bin:/usr/bin:/bin:/usr/sbin:/sbin
export FW_BIN=/pc/bin HOME=/tmp
T=/mnt/t
CTL=/mnt/ctl
KEYS=/pc/keys
# The syscalls that change a file system (the host wrote the list).
STATEFUL=$(cat /pc/traced)

say() { echo "@@$*"; }
fail() { say "fail $*"; }
# The job: the kernel command line, or for a guest resumed from a saved
# one (pc.wait), the line the host writes to the serial input.
ARGS=$(cat /proc/cmdline)
arg() { tr ' ' '\n' <<<"$ARGS" | sed -n "s/^pc\.$1=//p"; }
disk() {
    local dev
    for dev in /sys/block/vd*; do
        [ "$(cat "$dev/serial" 2>/dev/null)" = "$1" ] && { echo "/dev/${dev##*/}"; return; }
    done
    say "fatal no disk with serial $1"
}

install_pkg() {
    fw-install --target "$T" --keyring "$KEYS" --hook-retry-interval 0.01 "/pc/pkg/$1.fw"
}
switch() { fw-switch --target "$T" "$@"; }

# The operation a phase cuts into (run traced, in its own bash).
operation() {
    case $1 in
        fresh) install_pkg v1 ;;
        upgrade) install_pkg v2 ;;
        rollback | failsafe) install_pkg v3 ;;
        recover-rollback | recover-undo) switch recover --hook-retry-interval 0.01 ;;
        commit) switch commit ;;
        clean) switch clean --keep 1 ;;
        link-tree) fw-switch link-tree "$T/current/etc" /mnt/etc ;;
        *) say "fatal unknown phase $1"; return 2 ;;
    esac
}

# The state before the operation, made without cuts.
setup() {
    mkdir -p "$T" "$CTL" || return 1
    case $1 in
        fresh) ;;
        upgrade) install_pkg v1 && switch commit ;;
        rollback)
            touch "$CTL/fail-post-install-v3" && install_pkg v1 && switch commit ;;
        failsafe)
            # v3 fails its post-install; v1 fails again when rolled back to.
            touch "$CTL/fail-post-install-v3" "$CTL/fail-rollback-v1" &&
                install_pkg v0 && switch set-failsafe current &&
                install_pkg v1 && switch commit ;;
        recover-rollback)
            # As if the power went while v2's post-install ran.
            install_pkg v1 && switch commit && install_pkg v2 &&
                switch journal set post-install ;;
        recover-undo)
            # As if the power went right after v2 was fixated.
            install_pkg v1 && switch commit && switch journal begin &&
                staged=$(fw-unseal --keyring "$KEYS" </pc/pkg/v2.fw | fw-unpack --keyring "$KEYS" --target "$T") &&
                fw-verify --keyring "$KEYS" --target "$T" "$staged" >/dev/null &&
                fw-fixate --target "$T" "$staged" >/dev/null ;;
        commit) install_pkg v1 && switch commit && install_pkg v2 ;;
        clean)
            install_pkg v0 && install_pkg v1 && install_pkg v2 && install_pkg v4 &&
                switch commit ;;
        link-tree)
            install_pkg v1 && switch commit && mkdir -p /mnt/etc &&
                echo mine >/mnt/etc/local.conf ;;
        *) say "fatal unknown phase $1"; return 2 ;;
    esac
}

# Runs the phase's operation traced; the syscalls go to the serial line.
traced() {
    local phase=$1
    say "go $phase"
    strace -f -qq -z -Y -y --seccomp-bpf -s 0 -e signal=none -e "trace=$STATEFUL" \
        -o /dev/ttyS0 -- bash /pc/guest.sh operation "$phase" </dev/null
    say "done $?"
}

version_of() { cat "$1/VERSION" 2>/dev/null || echo "?"; }

# The checks after a cut, from inside, after recover ran as at boot.
check() {
    local phase=${1%%:*} rc=${1#*:} dev current name entry out code
    dev=$(disk check)
    mount -t ext4 "$dev" /mnt || { fail "cannot mount the cut disk"; return; }
    # What the phase may end on; what it must end on once it had finished.
    local allowed done_rc done_current
    case $phase in
        fresh) allowed="none v1" done_rc=0 done_current=v1 ;;
        upgrade) allowed="v1 v2" done_rc=0 done_current=v2 ;;
        rollback) allowed="v1" done_rc=7 done_current=v1 ;;
        failsafe) allowed="v1 v0" done_rc=8 done_current=v0 ;;
        recover-rollback) allowed="v1" done_rc=7 done_current=v1 ;;
        recover-undo) allowed="v1" done_rc=0 done_current=v1 ;;
        commit) allowed="v2" done_rc=0 done_current=v2 ;;
        clean) allowed="v4" done_rc=0 done_current=v4 ;;
        link-tree) allowed="v1" done_rc=0 done_current=v1 ;;
        *) say "fatal unknown phase $phase"; return ;;
    esac
    if [ "$rc" != cut ] && [ "$rc" != "$done_rc" ]; then
        fail "the $phase operation had exited $rc before the cut, not $done_rc"
    fi

    # As fw-recover.service does at boot.
    out=$(switch recover --hook-retry-interval 0.01 2>&1)
    code=$?
    case $code in 0 | 7 | 8) ;; *) fail "recover exit $code: $out" ;; esac

    # current: a complete version that verifies.
    current=none
    if [ -L "$T/current" ]; then
        if fw-verify -q --keyring "$KEYS" --target "$T" "$T/current" >/dev/null; then
            current=$(version_of "$T/current")
        else
            fail "current ($(readlink "$T/current")) does not verify"
            current=broken
        fi
    elif [ -e "$T/current" ]; then
        fail "current is not a link"
    fi
    case " $allowed " in *" $current "*) ;; *) fail "current is $current, expected one of: $allowed" ;; esac
    if [ "$rc" != cut ] && [ "$current" != "$done_current" ]; then
        fail "the operation had finished before the cut, yet current is $current, not $done_current"
    fi

    # Every version present verifies (recover removes what does not).
    for entry in "$T"/* "$T"/.[!.]*; do
        [ -e "$entry" ] || [ -L "$entry" ] || continue
        name=${entry##*/}
        case $name in
            current | previous | failsafe)
                [ -L "$entry" ] || fail "$name is not a link"
                [ -L "$entry" ] && [ ! -d "$entry" ] && fail "$name -> $(readlink "$entry"), which is missing"
                ;;
            .fw) ;;
            .*) fail "leftover $name in the target" ;;
            *)
                if [ -L "$entry" ] || [ ! -d "$entry" ]; then
                    fail "leftover $name in the target"
                elif [ "$name" = "$(readlink "$T/current")" ] && [ "$current" != broken ]; then
                    : # verified above
                elif ! out=$(fw-verify --keyring "$KEYS" --target "$T" "$entry" 2>&1 >/dev/null); then
                    fail "version directory $name does not verify after recover: $out"
                fi
                ;;
        esac
    done

    # fw's state: no staging, nothing in flight, no leftovers.
    for entry in "$T"/.fw/* "$T"/.fw/.[!.]*; do
        [ -e "$entry" ] || [ -L "$entry" ] || continue
        name=${entry##*/}
        case $name in
            lock | journal | security-floor | failed | inodes) ;;
            staging)
                [ -z "$(ls -A "$entry")" ] || fail "staging left: $(ls -A "$entry" | tr '\n' ' ')"
                ;;
            *) fail "leftover .fw/$name" ;;
        esac
    done
    if [ -e "$T/.fw/journal" ]; then
        local phase_now to_now
        phase_now=$(sed -n 's/.*"phase": *"\([^"]*\)".*/\1/p' "$T/.fw/journal")
        to_now=$(sed -n 's/.*"to": *"\([^"]*\)".*/\1/p' "$T/.fw/journal")
        if [ "$phase_now" != pending ] || [ "$to_now" != "$(readlink "$T/current")" ]; then
            fail "journal in flight after recover: $(tr -d '\n' <"$T/.fw/journal")"
        fi
    fi
    if [ -e "$T/.fw/security-floor" ]; then
        grep -qx '[0-9][0-9]*' "$T/.fw/security-floor" ||
            fail "security-floor is not a number: $(od -c "$T/.fw/security-floor" | head -3)"
    fi

    # What a finished operation promised must have survived the cut.
    if [ "$rc" != cut ]; then
        case $phase in
            fresh | upgrade)
                [ -e "$T/.fw/journal" ] || fail "finished install is no longer pending"
                ;;
            commit)
                [ -e "$T/.fw/journal" ] && fail "committed, yet still pending"
                [ "$(cat "$T/.fw/security-floor" 2>/dev/null)" = 2 ] ||
                    fail "committed, yet the security floor is $(cat "$T/.fw/security-floor" 2>/dev/null)"
                ;;
            clean | recover-undo)
                for entry in "$T"/*; do
                    [ -L "$entry" ] && continue
                    case $(version_of "$entry") in
                        v0 | v1) [ "$phase" = clean ] && fail "cleaned, yet $(version_of "$entry") is back" ;;
                        v2) [ "$phase" = recover-undo ] && fail "undone, yet v2 is back" ;;
                    esac
                done
                ;;
        esac
    fi
    if [ "$phase" = link-tree ]; then
        check_links "$rc"
    fi

    # A further install works, and recover then has nothing to do.
    if ! out=$(install_pkg v5 2>&1); then
        fail "a further install failed: $out"
    elif [ "$(version_of "$T/current")" != v5 ] ||
        ! fw-verify -q --keyring "$KEYS" --target "$T" "$T/current" >/dev/null; then
        fail "after a further install, current is not a verified v5"
    fi
    out=$(switch recover --no-boot-count 2>&1) || fail "recover after the further install: $out"
    umount /mnt || fail "cannot unmount the checked disk"
    say "checked $phase"
}

# link-tree: a run after the cut completes the tree and leaves nothing of
# its own behind; a run that had finished must have left it complete.
check_links() {
    local rc=$1 src="$T/current/etc" dest=/mnt/etc missing
    links_missing() {
        (cd "$src" && find . ! -type d) | while read -r rel; do
            [ "$(readlink "$dest/$rel")" = "$src/${rel#./}" ] || echo "$rel"
        done
    }
    if [ "$rc" != cut ]; then
        missing=$(links_missing | head -5 | tr '\n' ' ')
        [ -z "$missing" ] || fail "link-tree had finished, yet links are missing: $missing"
    fi
    out=$(fw-switch link-tree "$src" "$dest" 2>&1) || fail "link-tree after the cut: $out"
    missing=$(links_missing | head -5 | tr '\n' ' ')
    [ -z "$missing" ] || fail "links missing after link-tree ran again: $missing"
    [ "$(cat "$dest/local.conf" 2>/dev/null)" = mine ] || fail "link-tree lost a real file of /etc"
    out=$(find "$dest" -name '*.fw-link-tree*')
    [ -z "$out" ] || fail "link-tree left temporary links: $out"
}

# The operation through dm-log-writes, marked where it starts and ends.
logged() {
    local phase=${1%%:*} data=${1#*:} dev log
    dev=$(disk cut)
    log=$(disk log)
    export DM_DISABLE_UDEV=1
    insmod /pc/modules/dm-mod.ko && insmod /pc/modules/dm-log-writes.ko &&
        dmsetup create lw --table "0 $(blockdev --getsz "$dev") log-writes $dev $log" &&
        mount -t ext4 -o "noauto_da_alloc,commit=1,data=$data" /dev/mapper/lw /mnt ||
        { say "fatal cannot log the writes of $phase"; return; }
    dmsetup message lw 0 mark start
    traced "$phase"
    dmsetup message lw 0 mark done
    umount /mnt
    dmsetup remove lw
    say "logged $phase"
}

main() {
    local phase spec
    if [ "${1:-}" = operation ]; then
        operation "$2"
        return
    fi
    if [ -n "$(arg wait)" ]; then
        # The host saves the guest here, and resumes it for every job.
        stty -F /dev/ttyS0 -echo
        say "ready"
        # Asks every second, so that a resumed guest's host knows when it
        # listens (input written while QEMU still loads it is lost).
        until IFS= read -r -t 1 ARGS </dev/ttyS0; do say "waiting"; done
        # The clock stood still while the guest was saved, and the block
        # layer may cache sectors of the disks of then.
        date -s "@$(arg date)" >/dev/null
        local dev
        for dev in /sys/block/vd*; do
            [ "$(cat "$dev/serial")" = tools ] || blockdev --flushbufs "/dev/${dev##*/}"
        done
    fi
    say "up $(cut -d' ' -f1 /proc/uptime)"
    for phase in $(arg setup | tr ',' ' '); do
        mount -t ext4 "$(disk "s-$phase")" /mnt || { say "fatal mount s-$phase"; continue; }
        if setup "$phase" >/tmp/setup.log 2>&1; then
            umount /mnt
            # The operation once, untraced by cuts: the host learns its steps.
            dd if="$(disk "s-$phase")" of="$(disk "c-$phase")" bs=1M 2>/dev/null
            mount -t ext4 -o noauto_da_alloc "$(disk "c-$phase")" /mnt
            traced "$phase"
            umount /mnt
            say "setup $phase"
        else
            cat /tmp/setup.log
            umount /mnt
            say "fatal setup $phase failed"
        fi
    done
    spec=$(arg check)
    [ -z "$spec" ] || check "$spec"
    spec=$(arg log)
    [ -z "$spec" ] || logged "$spec"
    spec=$(arg cut)
    if [ -n "$spec" ]; then
        phase=${spec%%:*}
        mount -t ext4 -o "noauto_da_alloc,commit=1,data=${spec#*:}" "$(disk cut)" /mnt ||
            say "fatal cannot mount the disk to cut"
        traced "$phase"
        # The power goes at the host's chosen instant, maybe after this.
        while :; do sleep 1; done
    fi
    sync
    say "off"
    poweroff -f
}

main "$@"

# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_fw_switch_global_optspecs
    string join \n target= wait= q/quiet v/verbose log-format= h/help V/version
end

function __fish_fw_switch_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_fw_switch_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_fw_switch_using_subcommand
    set -l cmd (__fish_fw_switch_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c fw-switch -n "__fish_fw_switch_needs_command" -l target -d 'The firmware target [default: $FW_TARGET, else /opt/firmware]' -r -F
complete -c fw-switch -n "__fish_fw_switch_needs_command" -l wait -d 'Wait up to SECS for the target lock instead of failing at once (exit 6) [default when given without SECS: 3600]' -r
complete -c fw-switch -n "__fish_fw_switch_needs_command" -l log-format -d 'How messages on stderr look: human one-liners, or one JSON object per line [default: $FW_LOG_FORMAT, else human]' -r -f -a "human\t''
json\t''"
complete -c fw-switch -n "__fish_fw_switch_needs_command" -s q -l quiet -d 'Say less on stderr (errors only)'
complete -c fw-switch -n "__fish_fw_switch_needs_command" -s v -l verbose -d 'Say more on stderr'
complete -c fw-switch -n "__fish_fw_switch_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fw-switch -n "__fish_fw_switch_needs_command" -s V -l version -d 'Print version'
complete -c fw-switch -n "__fish_fw_switch_needs_command" -f -a "status" -d 'Show current, previous, failsafe and every installed version (name, version, security_version, size, bytes shared with other versions)'
complete -c fw-switch -n "__fish_fw_switch_needs_command" -f -a "to" -d 'Make PATH current (a verified version of the target: a path or a directory name); the old current becomes previous'
complete -c fw-switch -n "__fish_fw_switch_needs_command" -f -a "rollback" -d 'Make previous current again (the old current becomes previous)'
complete -c fw-switch -n "__fish_fw_switch_needs_command" -f -a "failsafe" -d 'Make the failsafe version current'
complete -c fw-switch -n "__fish_fw_switch_needs_command" -f -a "set-failsafe" -d 'Make PATH the failsafe version: the last resort, never removed'
complete -c fw-switch -n "__fish_fw_switch_needs_command" -f -a "commit" -d 'Accept the current version: raise the anti-rollback floor to its security_version (TARGET/.fw/security-floor)'
complete -c fw-switch -n "__fish_fw_switch_needs_command" -f -a "recover" -d 'Bring the target to a consistent state (run at every boot): finish or undo the transaction in TARGET/.fw/journal (before the switch: undone; after it: rolled back to the previous version, else the failsafe, running their hooks with FW_DIRECTION=rollback), count a boot of a version on probation and roll it back after --max-boots boots without a commit; adopt a hand-made current, restore a lost current link, remove leftover temporary links and dead staging directories. Exit 7: rolled back to the previous version; 8: on the failsafe'
complete -c fw-switch -n "__fish_fw_switch_needs_command" -f -a "journal" -d 'For install scripts: record the transaction in flight in TARGET/.fw/journal (see `recover`)'
complete -c fw-switch -n "__fish_fw_switch_needs_command" -f -a "clean" -d 'Remove versions beyond the N newest (never current, previous or failsafe) and dead staging directories; report what was freed'
complete -c fw-switch -n "__fish_fw_switch_needs_command" -f -a "link-tree" -d 'Symlink every file under SRC (e.g. /opt/firmware/current/etc) into DEST (e.g. /etc), creating directories; idempotent. Real files in DEST are left alone unless --force'
complete -c fw-switch -n "__fish_fw_switch_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand status" -l target -d 'The firmware target [default: $FW_TARGET, else /opt/firmware]' -r -F
complete -c fw-switch -n "__fish_fw_switch_using_subcommand status" -l wait -d 'Wait up to SECS for the target lock instead of failing at once (exit 6) [default when given without SECS: 3600]' -r
complete -c fw-switch -n "__fish_fw_switch_using_subcommand status" -l log-format -d 'How messages on stderr look: human one-liners, or one JSON object per line [default: $FW_LOG_FORMAT, else human]' -r -f -a "human\t''
json\t''"
complete -c fw-switch -n "__fish_fw_switch_using_subcommand status" -l json -d 'Print JSON for scripts instead of a table'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand status" -s q -l quiet -d 'Say less on stderr (errors only)'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand status" -s v -l verbose -d 'Say more on stderr'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand status" -s h -l help -d 'Print help'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand to" -l target -d 'The firmware target [default: $FW_TARGET, else /opt/firmware]' -r -F
complete -c fw-switch -n "__fish_fw_switch_using_subcommand to" -l wait -d 'Wait up to SECS for the target lock instead of failing at once (exit 6) [default when given without SECS: 3600]' -r
complete -c fw-switch -n "__fish_fw_switch_using_subcommand to" -l log-format -d 'How messages on stderr look: human one-liners, or one JSON object per line [default: $FW_LOG_FORMAT, else human]' -r -f -a "human\t''
json\t''"
complete -c fw-switch -n "__fish_fw_switch_using_subcommand to" -s q -l quiet -d 'Say less on stderr (errors only)'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand to" -s v -l verbose -d 'Say more on stderr'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand to" -s h -l help -d 'Print help'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand rollback" -l target -d 'The firmware target [default: $FW_TARGET, else /opt/firmware]' -r -F
complete -c fw-switch -n "__fish_fw_switch_using_subcommand rollback" -l wait -d 'Wait up to SECS for the target lock instead of failing at once (exit 6) [default when given without SECS: 3600]' -r
complete -c fw-switch -n "__fish_fw_switch_using_subcommand rollback" -l log-format -d 'How messages on stderr look: human one-liners, or one JSON object per line [default: $FW_LOG_FORMAT, else human]' -r -f -a "human\t''
json\t''"
complete -c fw-switch -n "__fish_fw_switch_using_subcommand rollback" -s q -l quiet -d 'Say less on stderr (errors only)'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand rollback" -s v -l verbose -d 'Say more on stderr'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand rollback" -s h -l help -d 'Print help'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand failsafe" -l target -d 'The firmware target [default: $FW_TARGET, else /opt/firmware]' -r -F
complete -c fw-switch -n "__fish_fw_switch_using_subcommand failsafe" -l wait -d 'Wait up to SECS for the target lock instead of failing at once (exit 6) [default when given without SECS: 3600]' -r
complete -c fw-switch -n "__fish_fw_switch_using_subcommand failsafe" -l log-format -d 'How messages on stderr look: human one-liners, or one JSON object per line [default: $FW_LOG_FORMAT, else human]' -r -f -a "human\t''
json\t''"
complete -c fw-switch -n "__fish_fw_switch_using_subcommand failsafe" -s q -l quiet -d 'Say less on stderr (errors only)'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand failsafe" -s v -l verbose -d 'Say more on stderr'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand failsafe" -s h -l help -d 'Print help'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand set-failsafe" -l target -d 'The firmware target [default: $FW_TARGET, else /opt/firmware]' -r -F
complete -c fw-switch -n "__fish_fw_switch_using_subcommand set-failsafe" -l wait -d 'Wait up to SECS for the target lock instead of failing at once (exit 6) [default when given without SECS: 3600]' -r
complete -c fw-switch -n "__fish_fw_switch_using_subcommand set-failsafe" -l log-format -d 'How messages on stderr look: human one-liners, or one JSON object per line [default: $FW_LOG_FORMAT, else human]' -r -f -a "human\t''
json\t''"
complete -c fw-switch -n "__fish_fw_switch_using_subcommand set-failsafe" -s q -l quiet -d 'Say less on stderr (errors only)'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand set-failsafe" -s v -l verbose -d 'Say more on stderr'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand set-failsafe" -s h -l help -d 'Print help'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand commit" -l target -d 'The firmware target [default: $FW_TARGET, else /opt/firmware]' -r -F
complete -c fw-switch -n "__fish_fw_switch_using_subcommand commit" -l wait -d 'Wait up to SECS for the target lock instead of failing at once (exit 6) [default when given without SECS: 3600]' -r
complete -c fw-switch -n "__fish_fw_switch_using_subcommand commit" -l log-format -d 'How messages on stderr look: human one-liners, or one JSON object per line [default: $FW_LOG_FORMAT, else human]' -r -f -a "human\t''
json\t''"
complete -c fw-switch -n "__fish_fw_switch_using_subcommand commit" -s q -l quiet -d 'Say less on stderr (errors only)'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand commit" -s v -l verbose -d 'Say more on stderr'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand commit" -s h -l help -d 'Print help'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand recover" -l max-boots -d 'Boots a pending (uncommitted) version gets before it is rolled back' -r
complete -c fw-switch -n "__fish_fw_switch_using_subcommand recover" -l hook-timeout -d 'Kill a rollback hook after S seconds (0: never)' -r
complete -c fw-switch -n "__fish_fw_switch_using_subcommand recover" -l hook-retries -d 'Retries of a rollback hook that exits 3' -r
complete -c fw-switch -n "__fish_fw_switch_using_subcommand recover" -l hook-retry-interval -d 'First retry interval of a rollback hook, doubling' -r
complete -c fw-switch -n "__fish_fw_switch_using_subcommand recover" -l target -d 'The firmware target [default: $FW_TARGET, else /opt/firmware]' -r -F
complete -c fw-switch -n "__fish_fw_switch_using_subcommand recover" -l wait -d 'Wait up to SECS for the target lock instead of failing at once (exit 6) [default when given without SECS: 3600]' -r
complete -c fw-switch -n "__fish_fw_switch_using_subcommand recover" -l log-format -d 'How messages on stderr look: human one-liners, or one JSON object per line [default: $FW_LOG_FORMAT, else human]' -r -f -a "human\t''
json\t''"
complete -c fw-switch -n "__fish_fw_switch_using_subcommand recover" -l no-boot-count -d 'Do not count this run as a boot (fw-install\'s own recovery)'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand recover" -s q -l quiet -d 'Say less on stderr (errors only)'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand recover" -s v -l verbose -d 'Say more on stderr'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand recover" -s h -l help -d 'Print help'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand journal; and not __fish_seen_subcommand_from begin set clear help" -l target -d 'The firmware target [default: $FW_TARGET, else /opt/firmware]' -r -F
complete -c fw-switch -n "__fish_fw_switch_using_subcommand journal; and not __fish_seen_subcommand_from begin set clear help" -l wait -d 'Wait up to SECS for the target lock instead of failing at once (exit 6) [default when given without SECS: 3600]' -r
complete -c fw-switch -n "__fish_fw_switch_using_subcommand journal; and not __fish_seen_subcommand_from begin set clear help" -l log-format -d 'How messages on stderr look: human one-liners, or one JSON object per line [default: $FW_LOG_FORMAT, else human]' -r -f -a "human\t''
json\t''"
complete -c fw-switch -n "__fish_fw_switch_using_subcommand journal; and not __fish_seen_subcommand_from begin set clear help" -s q -l quiet -d 'Say less on stderr (errors only)'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand journal; and not __fish_seen_subcommand_from begin set clear help" -s v -l verbose -d 'Say more on stderr'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand journal; and not __fish_seen_subcommand_from begin set clear help" -s h -l help -d 'Print help'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand journal; and not __fish_seen_subcommand_from begin set clear help" -f -a "begin" -d 'Begin a transaction from the current version (phase unpacking)'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand journal; and not __fish_seen_subcommand_from begin set clear help" -f -a "set" -d 'Move the transaction to PHASE: unpacking, fixating, fixated, pre-install, switching, post-install, pending, rolling-back'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand journal; and not __fish_seen_subcommand_from begin set clear help" -f -a "clear" -d 'End the transaction'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand journal; and not __fish_seen_subcommand_from begin set clear help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand journal; and __fish_seen_subcommand_from begin" -l target -d 'The firmware target [default: $FW_TARGET, else /opt/firmware]' -r -F
complete -c fw-switch -n "__fish_fw_switch_using_subcommand journal; and __fish_seen_subcommand_from begin" -l wait -d 'Wait up to SECS for the target lock instead of failing at once (exit 6) [default when given without SECS: 3600]' -r
complete -c fw-switch -n "__fish_fw_switch_using_subcommand journal; and __fish_seen_subcommand_from begin" -l log-format -d 'How messages on stderr look: human one-liners, or one JSON object per line [default: $FW_LOG_FORMAT, else human]' -r -f -a "human\t''
json\t''"
complete -c fw-switch -n "__fish_fw_switch_using_subcommand journal; and __fish_seen_subcommand_from begin" -s q -l quiet -d 'Say less on stderr (errors only)'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand journal; and __fish_seen_subcommand_from begin" -s v -l verbose -d 'Say more on stderr'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand journal; and __fish_seen_subcommand_from begin" -s h -l help -d 'Print help'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand journal; and __fish_seen_subcommand_from set" -l to -d 'The new version\'s directory name or path' -r -F
complete -c fw-switch -n "__fish_fw_switch_using_subcommand journal; and __fish_seen_subcommand_from set" -l target -d 'The firmware target [default: $FW_TARGET, else /opt/firmware]' -r -F
complete -c fw-switch -n "__fish_fw_switch_using_subcommand journal; and __fish_seen_subcommand_from set" -l wait -d 'Wait up to SECS for the target lock instead of failing at once (exit 6) [default when given without SECS: 3600]' -r
complete -c fw-switch -n "__fish_fw_switch_using_subcommand journal; and __fish_seen_subcommand_from set" -l log-format -d 'How messages on stderr look: human one-liners, or one JSON object per line [default: $FW_LOG_FORMAT, else human]' -r -f -a "human\t''
json\t''"
complete -c fw-switch -n "__fish_fw_switch_using_subcommand journal; and __fish_seen_subcommand_from set" -s q -l quiet -d 'Say less on stderr (errors only)'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand journal; and __fish_seen_subcommand_from set" -s v -l verbose -d 'Say more on stderr'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand journal; and __fish_seen_subcommand_from set" -s h -l help -d 'Print help'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand journal; and __fish_seen_subcommand_from clear" -l target -d 'The firmware target [default: $FW_TARGET, else /opt/firmware]' -r -F
complete -c fw-switch -n "__fish_fw_switch_using_subcommand journal; and __fish_seen_subcommand_from clear" -l wait -d 'Wait up to SECS for the target lock instead of failing at once (exit 6) [default when given without SECS: 3600]' -r
complete -c fw-switch -n "__fish_fw_switch_using_subcommand journal; and __fish_seen_subcommand_from clear" -l log-format -d 'How messages on stderr look: human one-liners, or one JSON object per line [default: $FW_LOG_FORMAT, else human]' -r -f -a "human\t''
json\t''"
complete -c fw-switch -n "__fish_fw_switch_using_subcommand journal; and __fish_seen_subcommand_from clear" -s q -l quiet -d 'Say less on stderr (errors only)'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand journal; and __fish_seen_subcommand_from clear" -s v -l verbose -d 'Say more on stderr'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand journal; and __fish_seen_subcommand_from clear" -s h -l help -d 'Print help'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand journal; and __fish_seen_subcommand_from help" -f -a "begin" -d 'Begin a transaction from the current version (phase unpacking)'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand journal; and __fish_seen_subcommand_from help" -f -a "set" -d 'Move the transaction to PHASE: unpacking, fixating, fixated, pre-install, switching, post-install, pending, rolling-back'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand journal; and __fish_seen_subcommand_from help" -f -a "clear" -d 'End the transaction'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand journal; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand clean" -l keep -d 'How many of the newest versions to keep' -r
complete -c fw-switch -n "__fish_fw_switch_using_subcommand clean" -l target -d 'The firmware target [default: $FW_TARGET, else /opt/firmware]' -r -F
complete -c fw-switch -n "__fish_fw_switch_using_subcommand clean" -l wait -d 'Wait up to SECS for the target lock instead of failing at once (exit 6) [default when given without SECS: 3600]' -r
complete -c fw-switch -n "__fish_fw_switch_using_subcommand clean" -l log-format -d 'How messages on stderr look: human one-liners, or one JSON object per line [default: $FW_LOG_FORMAT, else human]' -r -f -a "human\t''
json\t''"
complete -c fw-switch -n "__fish_fw_switch_using_subcommand clean" -s q -l quiet -d 'Say less on stderr (errors only)'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand clean" -s v -l verbose -d 'Say more on stderr'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand clean" -s h -l help -d 'Print help'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand link-tree" -l target -d 'The firmware target [default: $FW_TARGET, else /opt/firmware]' -r -F
complete -c fw-switch -n "__fish_fw_switch_using_subcommand link-tree" -l wait -d 'Wait up to SECS for the target lock instead of failing at once (exit 6) [default when given without SECS: 3600]' -r
complete -c fw-switch -n "__fish_fw_switch_using_subcommand link-tree" -l log-format -d 'How messages on stderr look: human one-liners, or one JSON object per line [default: $FW_LOG_FORMAT, else human]' -r -f -a "human\t''
json\t''"
complete -c fw-switch -n "__fish_fw_switch_using_subcommand link-tree" -l force -d 'Replace files and links in DEST that are in the way'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand link-tree" -s q -l quiet -d 'Say less on stderr (errors only)'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand link-tree" -s v -l verbose -d 'Say more on stderr'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand link-tree" -s h -l help -d 'Print help'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand help; and not __fish_seen_subcommand_from status to rollback failsafe set-failsafe commit recover journal clean link-tree help" -f -a "status" -d 'Show current, previous, failsafe and every installed version (name, version, security_version, size, bytes shared with other versions)'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand help; and not __fish_seen_subcommand_from status to rollback failsafe set-failsafe commit recover journal clean link-tree help" -f -a "to" -d 'Make PATH current (a verified version of the target: a path or a directory name); the old current becomes previous'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand help; and not __fish_seen_subcommand_from status to rollback failsafe set-failsafe commit recover journal clean link-tree help" -f -a "rollback" -d 'Make previous current again (the old current becomes previous)'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand help; and not __fish_seen_subcommand_from status to rollback failsafe set-failsafe commit recover journal clean link-tree help" -f -a "failsafe" -d 'Make the failsafe version current'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand help; and not __fish_seen_subcommand_from status to rollback failsafe set-failsafe commit recover journal clean link-tree help" -f -a "set-failsafe" -d 'Make PATH the failsafe version: the last resort, never removed'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand help; and not __fish_seen_subcommand_from status to rollback failsafe set-failsafe commit recover journal clean link-tree help" -f -a "commit" -d 'Accept the current version: raise the anti-rollback floor to its security_version (TARGET/.fw/security-floor)'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand help; and not __fish_seen_subcommand_from status to rollback failsafe set-failsafe commit recover journal clean link-tree help" -f -a "recover" -d 'Bring the target to a consistent state (run at every boot): finish or undo the transaction in TARGET/.fw/journal (before the switch: undone; after it: rolled back to the previous version, else the failsafe, running their hooks with FW_DIRECTION=rollback), count a boot of a version on probation and roll it back after --max-boots boots without a commit; adopt a hand-made current, restore a lost current link, remove leftover temporary links and dead staging directories. Exit 7: rolled back to the previous version; 8: on the failsafe'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand help; and not __fish_seen_subcommand_from status to rollback failsafe set-failsafe commit recover journal clean link-tree help" -f -a "journal" -d 'For install scripts: record the transaction in flight in TARGET/.fw/journal (see `recover`)'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand help; and not __fish_seen_subcommand_from status to rollback failsafe set-failsafe commit recover journal clean link-tree help" -f -a "clean" -d 'Remove versions beyond the N newest (never current, previous or failsafe) and dead staging directories; report what was freed'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand help; and not __fish_seen_subcommand_from status to rollback failsafe set-failsafe commit recover journal clean link-tree help" -f -a "link-tree" -d 'Symlink every file under SRC (e.g. /opt/firmware/current/etc) into DEST (e.g. /etc), creating directories; idempotent. Real files in DEST are left alone unless --force'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand help; and not __fish_seen_subcommand_from status to rollback failsafe set-failsafe commit recover journal clean link-tree help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand help; and __fish_seen_subcommand_from journal" -f -a "begin" -d 'Begin a transaction from the current version (phase unpacking)'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand help; and __fish_seen_subcommand_from journal" -f -a "set" -d 'Move the transaction to PHASE: unpacking, fixating, fixated, pre-install, switching, post-install, pending, rolling-back'
complete -c fw-switch -n "__fish_fw_switch_using_subcommand help; and __fish_seen_subcommand_from journal" -f -a "clear" -d 'End the transaction'

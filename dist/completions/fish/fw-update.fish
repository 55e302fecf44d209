# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_fw_update_global_optspecs
    string join \n q/quiet v/verbose log-format= index= target= keyring= config= status= once stream name= auto-download auto-install check-interval= retry-interval= max-retries= download-retries= download-gate= install-gate= fw-install= h/help V/version
end

function __fish_fw_update_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_fw_update_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_fw_update_using_subcommand
    set -l cmd (__fish_fw_update_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c fw-update -n "__fish_fw_update_needs_command" -l log-format -d 'How messages on stderr look: human one-liners, or one JSON object per line [default: $FW_LOG_FORMAT, else human]' -r -f -a "human\t''
json\t''"
complete -c fw-update -n "__fish_fw_update_needs_command" -l index -d 'The release index\'s URL (its signature is URL.sig)' -r
complete -c fw-update -n "__fish_fw_update_needs_command" -l target -d 'The firmware target [default: $FW_TARGET, else /opt/firmware]' -r -F
complete -c fw-update -n "__fish_fw_update_needs_command" -l keyring -d 'Trusted certificates (and the device key) [default: $FW_KEYRING, else /etc/fw/keys]' -r -F
complete -c fw-update -n "__fish_fw_update_needs_command" -l config -d 'The configuration (TOML) [default: $FW_UPDATE_CONFIG, else /etc/fw/update.toml if it exists]' -r -F
complete -c fw-update -n "__fish_fw_update_needs_command" -l status -d 'Append status events to FILE instead of writing them to stdout' -r -F
complete -c fw-update -n "__fish_fw_update_needs_command" -l name -d 'The firmware name to follow when nothing is installed yet' -r
complete -c fw-update -n "__fish_fw_update_needs_command" -l check-interval -d 'run: time between checks, e.g. 1h, 30m, 24h0m0s (config: check_interval)' -r
complete -c fw-update -n "__fish_fw_update_needs_command" -l retry-interval -d 'Wait after a gate\'s or hook\'s "not now" (exit 3) (config: retry_interval)' -r
complete -c fw-update -n "__fish_fw_update_needs_command" -l max-retries -d 'Retries after "not now" before giving up (config: max_retries)' -r
complete -c fw-update -n "__fish_fw_update_needs_command" -l download-retries -d 'Retries of an interrupted download (config: download_retries)' -r
complete -c fw-update -n "__fish_fw_update_needs_command" -l download-gate -d 'A command that says whether to download now: 0 yes, 3 not now (config: download_gate)' -r
complete -c fw-update -n "__fish_fw_update_needs_command" -l install-gate -d 'A command that says whether to install now: 0 yes, 3 not now (config: install_gate)' -r
complete -c fw-update -n "__fish_fw_update_needs_command" -l fw-install -d 'scripts/fw-install [default: $FW_INSTALL, else next to fw-update, else PATH]' -r -F
complete -c fw-update -n "__fish_fw_update_needs_command" -s q -l quiet -d 'Say less on stderr (errors only)'
complete -c fw-update -n "__fish_fw_update_needs_command" -s v -l verbose -d 'Say more on stderr'
complete -c fw-update -n "__fish_fw_update_needs_command" -l once -d 'run: one cycle, then exit (for timers and tests)'
complete -c fw-update -n "__fish_fw_update_needs_command" -l stream -d 'install: let fw-install stream the package from its URL instead of downloading it first (no resume, no BLAKE3 check against the index; the package\'s signature and security_version still hold)'
complete -c fw-update -n "__fish_fw_update_needs_command" -l auto-download -d 'run: download updates (config: auto_download)'
complete -c fw-update -n "__fish_fw_update_needs_command" -l auto-install -d 'run: download and install updates (config: auto_install)'
complete -c fw-update -n "__fish_fw_update_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fw-update -n "__fish_fw_update_needs_command" -s V -l version -d 'Print version'
complete -c fw-update -n "__fish_fw_update_needs_command" -f -a "check" -d 'Fetch and verify the index; say whether an update is available'
complete -c fw-update -n "__fish_fw_update_needs_command" -f -a "download" -d 'check, then download the update into TARGET/.fw/downloads/'
complete -c fw-update -n "__fish_fw_update_needs_command" -f -a "install" -d 'check, download, then install the update with fw-install'
complete -c fw-update -n "__fish_fw_update_needs_command" -f -a "run" -d 'What the configuration says (auto_download, auto_install), every check_interval; with --once a single cycle'
complete -c fw-update -n "__fish_fw_update_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fw-update -n "__fish_fw_update_using_subcommand check" -l log-format -d 'How messages on stderr look: human one-liners, or one JSON object per line [default: $FW_LOG_FORMAT, else human]' -r -f -a "human\t''
json\t''"
complete -c fw-update -n "__fish_fw_update_using_subcommand check" -l index -d 'The release index\'s URL (its signature is URL.sig)' -r
complete -c fw-update -n "__fish_fw_update_using_subcommand check" -l target -d 'The firmware target [default: $FW_TARGET, else /opt/firmware]' -r -F
complete -c fw-update -n "__fish_fw_update_using_subcommand check" -l keyring -d 'Trusted certificates (and the device key) [default: $FW_KEYRING, else /etc/fw/keys]' -r -F
complete -c fw-update -n "__fish_fw_update_using_subcommand check" -l config -d 'The configuration (TOML) [default: $FW_UPDATE_CONFIG, else /etc/fw/update.toml if it exists]' -r -F
complete -c fw-update -n "__fish_fw_update_using_subcommand check" -l status -d 'Append status events to FILE instead of writing them to stdout' -r -F
complete -c fw-update -n "__fish_fw_update_using_subcommand check" -l name -d 'The firmware name to follow when nothing is installed yet' -r
complete -c fw-update -n "__fish_fw_update_using_subcommand check" -l check-interval -d 'run: time between checks, e.g. 1h, 30m, 24h0m0s (config: check_interval)' -r
complete -c fw-update -n "__fish_fw_update_using_subcommand check" -l retry-interval -d 'Wait after a gate\'s or hook\'s "not now" (exit 3) (config: retry_interval)' -r
complete -c fw-update -n "__fish_fw_update_using_subcommand check" -l max-retries -d 'Retries after "not now" before giving up (config: max_retries)' -r
complete -c fw-update -n "__fish_fw_update_using_subcommand check" -l download-retries -d 'Retries of an interrupted download (config: download_retries)' -r
complete -c fw-update -n "__fish_fw_update_using_subcommand check" -l download-gate -d 'A command that says whether to download now: 0 yes, 3 not now (config: download_gate)' -r
complete -c fw-update -n "__fish_fw_update_using_subcommand check" -l install-gate -d 'A command that says whether to install now: 0 yes, 3 not now (config: install_gate)' -r
complete -c fw-update -n "__fish_fw_update_using_subcommand check" -l fw-install -d 'scripts/fw-install [default: $FW_INSTALL, else next to fw-update, else PATH]' -r -F
complete -c fw-update -n "__fish_fw_update_using_subcommand check" -s q -l quiet -d 'Say less on stderr (errors only)'
complete -c fw-update -n "__fish_fw_update_using_subcommand check" -s v -l verbose -d 'Say more on stderr'
complete -c fw-update -n "__fish_fw_update_using_subcommand check" -l once -d 'run: one cycle, then exit (for timers and tests)'
complete -c fw-update -n "__fish_fw_update_using_subcommand check" -l stream -d 'install: let fw-install stream the package from its URL instead of downloading it first (no resume, no BLAKE3 check against the index; the package\'s signature and security_version still hold)'
complete -c fw-update -n "__fish_fw_update_using_subcommand check" -l auto-download -d 'run: download updates (config: auto_download)'
complete -c fw-update -n "__fish_fw_update_using_subcommand check" -l auto-install -d 'run: download and install updates (config: auto_install)'
complete -c fw-update -n "__fish_fw_update_using_subcommand check" -s h -l help -d 'Print help'
complete -c fw-update -n "__fish_fw_update_using_subcommand download" -l log-format -d 'How messages on stderr look: human one-liners, or one JSON object per line [default: $FW_LOG_FORMAT, else human]' -r -f -a "human\t''
json\t''"
complete -c fw-update -n "__fish_fw_update_using_subcommand download" -l index -d 'The release index\'s URL (its signature is URL.sig)' -r
complete -c fw-update -n "__fish_fw_update_using_subcommand download" -l target -d 'The firmware target [default: $FW_TARGET, else /opt/firmware]' -r -F
complete -c fw-update -n "__fish_fw_update_using_subcommand download" -l keyring -d 'Trusted certificates (and the device key) [default: $FW_KEYRING, else /etc/fw/keys]' -r -F
complete -c fw-update -n "__fish_fw_update_using_subcommand download" -l config -d 'The configuration (TOML) [default: $FW_UPDATE_CONFIG, else /etc/fw/update.toml if it exists]' -r -F
complete -c fw-update -n "__fish_fw_update_using_subcommand download" -l status -d 'Append status events to FILE instead of writing them to stdout' -r -F
complete -c fw-update -n "__fish_fw_update_using_subcommand download" -l name -d 'The firmware name to follow when nothing is installed yet' -r
complete -c fw-update -n "__fish_fw_update_using_subcommand download" -l check-interval -d 'run: time between checks, e.g. 1h, 30m, 24h0m0s (config: check_interval)' -r
complete -c fw-update -n "__fish_fw_update_using_subcommand download" -l retry-interval -d 'Wait after a gate\'s or hook\'s "not now" (exit 3) (config: retry_interval)' -r
complete -c fw-update -n "__fish_fw_update_using_subcommand download" -l max-retries -d 'Retries after "not now" before giving up (config: max_retries)' -r
complete -c fw-update -n "__fish_fw_update_using_subcommand download" -l download-retries -d 'Retries of an interrupted download (config: download_retries)' -r
complete -c fw-update -n "__fish_fw_update_using_subcommand download" -l download-gate -d 'A command that says whether to download now: 0 yes, 3 not now (config: download_gate)' -r
complete -c fw-update -n "__fish_fw_update_using_subcommand download" -l install-gate -d 'A command that says whether to install now: 0 yes, 3 not now (config: install_gate)' -r
complete -c fw-update -n "__fish_fw_update_using_subcommand download" -l fw-install -d 'scripts/fw-install [default: $FW_INSTALL, else next to fw-update, else PATH]' -r -F
complete -c fw-update -n "__fish_fw_update_using_subcommand download" -s q -l quiet -d 'Say less on stderr (errors only)'
complete -c fw-update -n "__fish_fw_update_using_subcommand download" -s v -l verbose -d 'Say more on stderr'
complete -c fw-update -n "__fish_fw_update_using_subcommand download" -l once -d 'run: one cycle, then exit (for timers and tests)'
complete -c fw-update -n "__fish_fw_update_using_subcommand download" -l stream -d 'install: let fw-install stream the package from its URL instead of downloading it first (no resume, no BLAKE3 check against the index; the package\'s signature and security_version still hold)'
complete -c fw-update -n "__fish_fw_update_using_subcommand download" -l auto-download -d 'run: download updates (config: auto_download)'
complete -c fw-update -n "__fish_fw_update_using_subcommand download" -l auto-install -d 'run: download and install updates (config: auto_install)'
complete -c fw-update -n "__fish_fw_update_using_subcommand download" -s h -l help -d 'Print help'
complete -c fw-update -n "__fish_fw_update_using_subcommand install" -l log-format -d 'How messages on stderr look: human one-liners, or one JSON object per line [default: $FW_LOG_FORMAT, else human]' -r -f -a "human\t''
json\t''"
complete -c fw-update -n "__fish_fw_update_using_subcommand install" -l index -d 'The release index\'s URL (its signature is URL.sig)' -r
complete -c fw-update -n "__fish_fw_update_using_subcommand install" -l target -d 'The firmware target [default: $FW_TARGET, else /opt/firmware]' -r -F
complete -c fw-update -n "__fish_fw_update_using_subcommand install" -l keyring -d 'Trusted certificates (and the device key) [default: $FW_KEYRING, else /etc/fw/keys]' -r -F
complete -c fw-update -n "__fish_fw_update_using_subcommand install" -l config -d 'The configuration (TOML) [default: $FW_UPDATE_CONFIG, else /etc/fw/update.toml if it exists]' -r -F
complete -c fw-update -n "__fish_fw_update_using_subcommand install" -l status -d 'Append status events to FILE instead of writing them to stdout' -r -F
complete -c fw-update -n "__fish_fw_update_using_subcommand install" -l name -d 'The firmware name to follow when nothing is installed yet' -r
complete -c fw-update -n "__fish_fw_update_using_subcommand install" -l check-interval -d 'run: time between checks, e.g. 1h, 30m, 24h0m0s (config: check_interval)' -r
complete -c fw-update -n "__fish_fw_update_using_subcommand install" -l retry-interval -d 'Wait after a gate\'s or hook\'s "not now" (exit 3) (config: retry_interval)' -r
complete -c fw-update -n "__fish_fw_update_using_subcommand install" -l max-retries -d 'Retries after "not now" before giving up (config: max_retries)' -r
complete -c fw-update -n "__fish_fw_update_using_subcommand install" -l download-retries -d 'Retries of an interrupted download (config: download_retries)' -r
complete -c fw-update -n "__fish_fw_update_using_subcommand install" -l download-gate -d 'A command that says whether to download now: 0 yes, 3 not now (config: download_gate)' -r
complete -c fw-update -n "__fish_fw_update_using_subcommand install" -l install-gate -d 'A command that says whether to install now: 0 yes, 3 not now (config: install_gate)' -r
complete -c fw-update -n "__fish_fw_update_using_subcommand install" -l fw-install -d 'scripts/fw-install [default: $FW_INSTALL, else next to fw-update, else PATH]' -r -F
complete -c fw-update -n "__fish_fw_update_using_subcommand install" -s q -l quiet -d 'Say less on stderr (errors only)'
complete -c fw-update -n "__fish_fw_update_using_subcommand install" -s v -l verbose -d 'Say more on stderr'
complete -c fw-update -n "__fish_fw_update_using_subcommand install" -l once -d 'run: one cycle, then exit (for timers and tests)'
complete -c fw-update -n "__fish_fw_update_using_subcommand install" -l stream -d 'install: let fw-install stream the package from its URL instead of downloading it first (no resume, no BLAKE3 check against the index; the package\'s signature and security_version still hold)'
complete -c fw-update -n "__fish_fw_update_using_subcommand install" -l auto-download -d 'run: download updates (config: auto_download)'
complete -c fw-update -n "__fish_fw_update_using_subcommand install" -l auto-install -d 'run: download and install updates (config: auto_install)'
complete -c fw-update -n "__fish_fw_update_using_subcommand install" -s h -l help -d 'Print help'
complete -c fw-update -n "__fish_fw_update_using_subcommand run" -l log-format -d 'How messages on stderr look: human one-liners, or one JSON object per line [default: $FW_LOG_FORMAT, else human]' -r -f -a "human\t''
json\t''"
complete -c fw-update -n "__fish_fw_update_using_subcommand run" -l index -d 'The release index\'s URL (its signature is URL.sig)' -r
complete -c fw-update -n "__fish_fw_update_using_subcommand run" -l target -d 'The firmware target [default: $FW_TARGET, else /opt/firmware]' -r -F
complete -c fw-update -n "__fish_fw_update_using_subcommand run" -l keyring -d 'Trusted certificates (and the device key) [default: $FW_KEYRING, else /etc/fw/keys]' -r -F
complete -c fw-update -n "__fish_fw_update_using_subcommand run" -l config -d 'The configuration (TOML) [default: $FW_UPDATE_CONFIG, else /etc/fw/update.toml if it exists]' -r -F
complete -c fw-update -n "__fish_fw_update_using_subcommand run" -l status -d 'Append status events to FILE instead of writing them to stdout' -r -F
complete -c fw-update -n "__fish_fw_update_using_subcommand run" -l name -d 'The firmware name to follow when nothing is installed yet' -r
complete -c fw-update -n "__fish_fw_update_using_subcommand run" -l check-interval -d 'run: time between checks, e.g. 1h, 30m, 24h0m0s (config: check_interval)' -r
complete -c fw-update -n "__fish_fw_update_using_subcommand run" -l retry-interval -d 'Wait after a gate\'s or hook\'s "not now" (exit 3) (config: retry_interval)' -r
complete -c fw-update -n "__fish_fw_update_using_subcommand run" -l max-retries -d 'Retries after "not now" before giving up (config: max_retries)' -r
complete -c fw-update -n "__fish_fw_update_using_subcommand run" -l download-retries -d 'Retries of an interrupted download (config: download_retries)' -r
complete -c fw-update -n "__fish_fw_update_using_subcommand run" -l download-gate -d 'A command that says whether to download now: 0 yes, 3 not now (config: download_gate)' -r
complete -c fw-update -n "__fish_fw_update_using_subcommand run" -l install-gate -d 'A command that says whether to install now: 0 yes, 3 not now (config: install_gate)' -r
complete -c fw-update -n "__fish_fw_update_using_subcommand run" -l fw-install -d 'scripts/fw-install [default: $FW_INSTALL, else next to fw-update, else PATH]' -r -F
complete -c fw-update -n "__fish_fw_update_using_subcommand run" -s q -l quiet -d 'Say less on stderr (errors only)'
complete -c fw-update -n "__fish_fw_update_using_subcommand run" -s v -l verbose -d 'Say more on stderr'
complete -c fw-update -n "__fish_fw_update_using_subcommand run" -l once -d 'run: one cycle, then exit (for timers and tests)'
complete -c fw-update -n "__fish_fw_update_using_subcommand run" -l stream -d 'install: let fw-install stream the package from its URL instead of downloading it first (no resume, no BLAKE3 check against the index; the package\'s signature and security_version still hold)'
complete -c fw-update -n "__fish_fw_update_using_subcommand run" -l auto-download -d 'run: download updates (config: auto_download)'
complete -c fw-update -n "__fish_fw_update_using_subcommand run" -l auto-install -d 'run: download and install updates (config: auto_install)'
complete -c fw-update -n "__fish_fw_update_using_subcommand run" -s h -l help -d 'Print help'
complete -c fw-update -n "__fish_fw_update_using_subcommand help; and not __fish_seen_subcommand_from check download install run help" -f -a "check" -d 'Fetch and verify the index; say whether an update is available'
complete -c fw-update -n "__fish_fw_update_using_subcommand help; and not __fish_seen_subcommand_from check download install run help" -f -a "download" -d 'check, then download the update into TARGET/.fw/downloads/'
complete -c fw-update -n "__fish_fw_update_using_subcommand help; and not __fish_seen_subcommand_from check download install run help" -f -a "install" -d 'check, download, then install the update with fw-install'
complete -c fw-update -n "__fish_fw_update_using_subcommand help; and not __fish_seen_subcommand_from check download install run help" -f -a "run" -d 'What the configuration says (auto_download, auto_install), every check_interval; with --once a single cycle'
complete -c fw-update -n "__fish_fw_update_using_subcommand help; and not __fish_seen_subcommand_from check download install run help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'

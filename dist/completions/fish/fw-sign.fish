# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_fw_sign_global_optspecs
    string join \n q/quiet v/verbose log-format= h/help V/version
end

function __fish_fw_sign_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_fw_sign_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_fw_sign_using_subcommand
    set -l cmd (__fish_fw_sign_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c fw-sign -n "__fish_fw_sign_needs_command" -l log-format -d 'How messages on stderr look: human one-liners, or one JSON object per line [default: $FW_LOG_FORMAT, else human]' -r -f -a "human\t''
json\t''"
complete -c fw-sign -n "__fish_fw_sign_needs_command" -s q -l quiet -d 'Say less on stderr (errors only)'
complete -c fw-sign -n "__fish_fw_sign_needs_command" -s v -l verbose -d 'Say more on stderr'
complete -c fw-sign -n "__fish_fw_sign_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fw-sign -n "__fish_fw_sign_needs_command" -s V -l version -d 'Print version'
complete -c fw-sign -n "__fish_fw_sign_needs_command" -f -a "keygen" -d 'Write a new secret key (armored, no passphrase) to stdout: Ed25519 signing and Cv25519 encryption subkeys, readable by GnuPG 2.2'
complete -c fw-sign -n "__fish_fw_sign_needs_command" -f -a "cert" -d 'Read a key (from fw-sign keygen or GnuPG) on stdin and write its public certificate, armored, to stdout'
complete -c fw-sign -n "__fish_fw_sign_needs_command" -f -a "pack" -d 'Pack DIR into a package on stdout: a signed manifest of every entry, then the tree, as a gzip\'d tar inside a signed OpenPGP message, encrypted if --encrypt-for is given. Reproducible with SOURCE_DATE_EPOCH set'
complete -c fw-sign -n "__fish_fw_sign_needs_command" -f -a "index" -d 'Write a release index (JSON) of PKG... to stdout for fw-update, and its detached signature to --signature FILE (default: stdout\'s file + .sig, e.g. > index.json writes index.json.sig). See docs/update.md'
complete -c fw-sign -n "__fish_fw_sign_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fw-sign -n "__fish_fw_sign_using_subcommand keygen" -l userid -d 'The key\'s user ID, e.g. \'ACME firmware <fw@acme.example>\'' -r
complete -c fw-sign -n "__fish_fw_sign_using_subcommand keygen" -l log-format -d 'How messages on stderr look: human one-liners, or one JSON object per line [default: $FW_LOG_FORMAT, else human]' -r -f -a "human\t''
json\t''"
complete -c fw-sign -n "__fish_fw_sign_using_subcommand keygen" -s q -l quiet -d 'Say less on stderr (errors only)'
complete -c fw-sign -n "__fish_fw_sign_using_subcommand keygen" -s v -l verbose -d 'Say more on stderr'
complete -c fw-sign -n "__fish_fw_sign_using_subcommand keygen" -s h -l help -d 'Print help'
complete -c fw-sign -n "__fish_fw_sign_using_subcommand cert" -l log-format -d 'How messages on stderr look: human one-liners, or one JSON object per line [default: $FW_LOG_FORMAT, else human]' -r -f -a "human\t''
json\t''"
complete -c fw-sign -n "__fish_fw_sign_using_subcommand cert" -s q -l quiet -d 'Say less on stderr (errors only)'
complete -c fw-sign -n "__fish_fw_sign_using_subcommand cert" -s v -l verbose -d 'Say more on stderr'
complete -c fw-sign -n "__fish_fw_sign_using_subcommand cert" -s h -l help -d 'Print help'
complete -c fw-sign -n "__fish_fw_sign_using_subcommand pack" -l key -d 'The vendor\'s secret key (armored or binary; fw-sign keygen or gpg --export-secret-keys)' -r -F
complete -c fw-sign -n "__fish_fw_sign_using_subcommand pack" -l encrypt-for -d 'Encrypt to this device certificate; repeat for several' -r -F
complete -c fw-sign -n "__fish_fw_sign_using_subcommand pack" -l version -d 'The firmware\'s version string [default: the creation time in seconds since 1970]' -r
complete -c fw-sign -n "__fish_fw_sign_using_subcommand pack" -l security-version -d 'Anti-rollback counter: devices refuse packages below the highest they installed' -r
complete -c fw-sign -n "__fish_fw_sign_using_subcommand pack" -l exclude -d 'Leave out paths (relative to DIR) matching this glob; repeat for several. A matching directory is left out whole' -r
complete -c fw-sign -n "__fish_fw_sign_using_subcommand pack" -l log-format -d 'How messages on stderr look: human one-liners, or one JSON object per line [default: $FW_LOG_FORMAT, else human]' -r -f -a "human\t''
json\t''"
complete -c fw-sign -n "__fish_fw_sign_using_subcommand pack" -l progress -d 'Show a progress bar on stderr even when it is not a terminal'
complete -c fw-sign -n "__fish_fw_sign_using_subcommand pack" -l no-progress -d 'Never show a progress bar'
complete -c fw-sign -n "__fish_fw_sign_using_subcommand pack" -s q -l quiet -d 'Say less on stderr (errors only)'
complete -c fw-sign -n "__fish_fw_sign_using_subcommand pack" -s v -l verbose -d 'Say more on stderr'
complete -c fw-sign -n "__fish_fw_sign_using_subcommand pack" -s h -l help -d 'Print help'
complete -c fw-sign -n "__fish_fw_sign_using_subcommand index" -l key -d 'The vendor\'s secret key that signs the index (and signed the packages)' -r -F
complete -c fw-sign -n "__fish_fw_sign_using_subcommand index" -l base-url -d 'The URL the packages are served under; each entry\'s URL is BASE/FILE-NAME' -r
complete -c fw-sign -n "__fish_fw_sign_using_subcommand index" -l expires -d 'How long devices accept the index, e.g. 12h, 7d, 24h0m0s' -r
complete -c fw-sign -n "__fish_fw_sign_using_subcommand index" -l signature -d 'Where to write the detached signature' -r -F
complete -c fw-sign -n "__fish_fw_sign_using_subcommand index" -l decrypt-key -d 'A device key to read encrypted packages\' manifests with' -r -F
complete -c fw-sign -n "__fish_fw_sign_using_subcommand index" -l log-format -d 'How messages on stderr look: human one-liners, or one JSON object per line [default: $FW_LOG_FORMAT, else human]' -r -f -a "human\t''
json\t''"
complete -c fw-sign -n "__fish_fw_sign_using_subcommand index" -s q -l quiet -d 'Say less on stderr (errors only)'
complete -c fw-sign -n "__fish_fw_sign_using_subcommand index" -s v -l verbose -d 'Say more on stderr'
complete -c fw-sign -n "__fish_fw_sign_using_subcommand index" -s h -l help -d 'Print help'
complete -c fw-sign -n "__fish_fw_sign_using_subcommand help; and not __fish_seen_subcommand_from keygen cert pack index help" -f -a "keygen" -d 'Write a new secret key (armored, no passphrase) to stdout: Ed25519 signing and Cv25519 encryption subkeys, readable by GnuPG 2.2'
complete -c fw-sign -n "__fish_fw_sign_using_subcommand help; and not __fish_seen_subcommand_from keygen cert pack index help" -f -a "cert" -d 'Read a key (from fw-sign keygen or GnuPG) on stdin and write its public certificate, armored, to stdout'
complete -c fw-sign -n "__fish_fw_sign_using_subcommand help; and not __fish_seen_subcommand_from keygen cert pack index help" -f -a "pack" -d 'Pack DIR into a package on stdout: a signed manifest of every entry, then the tree, as a gzip\'d tar inside a signed OpenPGP message, encrypted if --encrypt-for is given. Reproducible with SOURCE_DATE_EPOCH set'
complete -c fw-sign -n "__fish_fw_sign_using_subcommand help; and not __fish_seen_subcommand_from keygen cert pack index help" -f -a "index" -d 'Write a release index (JSON) of PKG... to stdout for fw-update, and its detached signature to --signature FILE (default: stdout\'s file + .sig, e.g. > index.json writes index.json.sig). See docs/update.md'
complete -c fw-sign -n "__fish_fw_sign_using_subcommand help; and not __fish_seen_subcommand_from keygen cert pack index help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'

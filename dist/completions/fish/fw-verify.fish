complete -c fw-verify -l keyring -d 'Trusted vendor certificates: a directory of *.asc, *.pgp, *.gpg files, or one file [default: $FW_KEYRING, else /etc/fw/keys]' -r -F
complete -c fw-verify -l target -d 'The firmware target, for the anti-rollback floor [default: $FW_TARGET, else /opt/firmware]' -r -F
complete -c fw-verify -l policy -d 'The device policy file [default: /etc/fw/policy.toml if present]' -r -F
complete -c fw-verify -l log-format -d 'How messages on stderr look: human one-liners, or one JSON object per line [default: $FW_LOG_FORMAT, else human]' -r -f -a "human\t''
json\t''"
complete -c fw-verify -s q -l quiet -d 'Say less on stderr (errors only)'
complete -c fw-verify -s v -l verbose -d 'Say more on stderr'
complete -c fw-verify -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fw-verify -s V -l version -d 'Print version'

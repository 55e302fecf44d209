complete -c fw-fixate -l target -d 'The firmware target [default: $FW_TARGET, else /opt/firmware]' -r -F
complete -c fw-fixate -l wait -d 'Wait up to SECS for the target lock instead of failing at once (exit 6)' -r
complete -c fw-fixate -l log-format -d 'How messages on stderr look: human one-liners, or one JSON object per line [default: $FW_LOG_FORMAT, else human]' -r -f -a "human\t''
json\t''"
complete -c fw-fixate -s q -l quiet -d 'Say less on stderr (errors only)'
complete -c fw-fixate -s v -l verbose -d 'Say more on stderr'
complete -c fw-fixate -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fw-fixate -s V -l version -d 'Print version'

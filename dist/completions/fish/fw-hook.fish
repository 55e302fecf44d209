complete -c fw-hook -l target -d 'The firmware target, whose `current` link is the default FW_FROM [default: $FW_TARGET, else /opt/firmware]' -r -F
complete -c fw-hook -l timeout -d 'Kill the hook (and its whole process group) if it runs longer than S seconds, per attempt; 0: never' -r
complete -c fw-hook -l retries -d 'Run the hook at most N more times while it exits 3 (retry later)' -r
complete -c fw-hook -l retry-interval -d 'Seconds before the first retry; doubled for each further one, ±20%' -r
complete -c fw-hook -l log-format -d 'How messages on stderr look: human one-liners, or one JSON object per line [default: $FW_LOG_FORMAT, else human]' -r -f -a "human\t''
json\t''"
complete -c fw-hook -s q -l quiet -d 'Say less on stderr (errors only)'
complete -c fw-hook -s v -l verbose -d 'Say more on stderr'
complete -c fw-hook -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fw-hook -s V -l version -d 'Print version'

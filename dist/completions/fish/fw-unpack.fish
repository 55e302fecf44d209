complete -c fw-unpack -l target -d 'The firmware target; staging goes to TARGET/.fw/staging [default: $FW_TARGET, else /opt/firmware]' -r -F
complete -c fw-unpack -l max-bytes -d 'Refuse packages whose content exceeds N bytes [default: 90% of the free space on the target\'s file system]' -r
complete -c fw-unpack -l log-format -d 'How messages on stderr look: human one-liners, or one JSON object per line [default: $FW_LOG_FORMAT, else human]' -r -f -a "human\t''
json\t''"
complete -c fw-unpack -s q -l quiet -d 'Say less on stderr (errors only)'
complete -c fw-unpack -s v -l verbose -d 'Say more on stderr'
complete -c fw-unpack -l progress -d 'Show a progress bar on stderr even when it is not a terminal'
complete -c fw-unpack -l no-progress -d 'Never show a progress bar'
complete -c fw-unpack -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fw-unpack -s V -l version -d 'Print version'

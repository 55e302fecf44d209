complete -c fw-install -l target -d 'the firmware target [$FW_TARGET, else /opt/firmware]' -r
complete -c fw-install -l keyring -d 'trusted certificates and device key [$FW_KEYRING, else /etc/fw/keys]' -r
complete -c fw-install -l status -d 'append one JSON status object per step to FILE (without it: to fd 3 if open)' -r
complete -c fw-install -l wait -d 'wait up to SECS for the target lock (default: fail at once, exit 6)' -r
complete -c fw-install -l hook-timeout -d 'kill a hook after S seconds (default 300)' -r
complete -c fw-install -l hook-retries -d 'retries of a hook that exits 3 (default 3)' -r
complete -c fw-install -l hook-retry-interval -d 'first retry interval, doubling (default 5)' -r
complete -c fw-install -s q -l quiet -d 'only errors on stderr'
complete -c fw-install -s h -l help -d 'Print help (see more with \'--help\')'

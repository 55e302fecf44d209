complete -c fw-unseal -l keyring -d 'Trusted vendor certificates and this device\'s decryption key: a directory of *.asc, *.pgp, *.gpg files, or one file [default: $FW_KEYRING, else /etc/fw/keys]' -r -F
complete -c fw-unseal -l log-format -d 'How messages on stderr look: human one-liners, or one JSON object per line [default: $FW_LOG_FORMAT, else human]' -r -f -a "human\t''
json\t''"
complete -c fw-unseal -l spool -d 'Write nothing until the whole package has verified, spooling it to an unlinked temporary file in $TMPDIR (needs space for the tar.gz)'
complete -c fw-unseal -s q -l quiet -d 'Say less on stderr (errors only)'
complete -c fw-unseal -s v -l verbose -d 'Say more on stderr'
complete -c fw-unseal -l progress -d 'Show a progress bar on stderr even when it is not a terminal'
complete -c fw-unseal -l no-progress -d 'Never show a progress bar'
complete -c fw-unseal -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fw-unseal -s V -l version -d 'Print version'

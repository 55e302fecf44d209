//! Archive paths: NAME and the path below it, plain relative components
//! only.

/// The longest path component Linux file systems hold (NAME_MAX).
const NAME_MAX: usize = 255;

/// Splits an archive path into NAME and the path below it (`.` for NAME
/// itself), refusing anything but plain relative components.
pub(crate) fn split_path(raw: &[u8]) -> std::result::Result<(String, String), String> {
    let path = std::str::from_utf8(raw).map_err(|_| "its path is not UTF-8".to_string())?;
    if path.starts_with('/') {
        return Err("it is an absolute path".into());
    }
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    let mut parts = trimmed.split('/');
    let top = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    for part in std::iter::once(top).chain(rest.iter().copied()) {
        match part {
            "" => return Err("it has an empty path component".into()),
            "." => return Err("it has a `.` path component".into()),
            ".." => return Err("it has a `..` path component".into()),
            _ if part.contains('\0') => return Err("it has a NUL byte".into()),
            _ if part.len() > NAME_MAX => {
                return Err(format!(
                    "it has a path component of {} bytes, more than a file name may have \
                     ({NAME_MAX}, NAME_MAX)",
                    part.len()
                ))
            }
            _ => {}
        }
    }
    let rel = if rest.is_empty() {
        ".".to_string()
    } else {
        rest.join("/")
    };
    Ok((top.to_string(), rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_safe_paths_only() {
        assert_eq!(split_path(b"fw/").unwrap(), ("fw".into(), ".".into()));
        assert_eq!(split_path(b"fw/a/b").unwrap(), ("fw".into(), "a/b".into()));
        assert_eq!(split_path(b"fw/dir/").unwrap(), ("fw".into(), "dir".into()));
        let longest = format!("fw/{}", "n".repeat(255));
        assert!(split_path(longest.as_bytes()).is_ok());
        for bad in [
            &b"/etc/passwd"[..],
            b"fw/../x",
            b"fw//x",
            b"./fw/x",
            b"fw/./x",
            b"fw/\xff",
            format!("fw/{}", "n".repeat(256)).as_bytes(),
        ] {
            assert!(split_path(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}

//! Parsing of byte sizes (`4096`, `64KiB`, `4MiB`) and budget lists (`4KiB..4MiB`, `4096,1MiB`).

use anyhow::{bail, Context};

/// Largest budget accepted: 64 GiB.
const BUDGET_BYTES_MAX: usize = 64 << 30;

/// `A..B` doubles from A up to B inclusive; otherwise a comma-separated list.
pub fn parse_budgets(text: &str) -> anyhow::Result<Vec<usize>> {
    let budgets = if let Some((low, high)) = text.split_once("..") {
        let (low, high) = (parse_bytes(low)?, parse_bytes(high)?);
        if low > high {
            bail!("budget range {text:?} runs backwards: {low} bytes is above {high} bytes");
        }
        std::iter::successors(Some(low), |&b| b.checked_mul(2))
            .take_while(|&b| b <= high)
            .collect()
    } else {
        text.split(',')
            .map(parse_bytes)
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    if budgets.is_empty() {
        bail!("--budgets {text:?} names no budget");
    }
    Ok(budgets)
}

/// A byte count with an optional binary suffix: B, KiB (or K, KB), MiB (M, MB), GiB (G, GB).
pub fn parse_bytes(text: &str) -> anyhow::Result<usize> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    let number: usize = digits
        .parse()
        .with_context(|| format!("budget {text:?} does not start with a number"))?;
    let shift = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        other => bail!("budget {text:?} has an unknown unit {other:?} (use B, KiB, MiB or GiB)"),
    };
    let bytes = number
        .checked_shl(shift)
        .filter(|&b| b >> shift == number && b <= BUDGET_BYTES_MAX);
    match bytes {
        Some(0) => bail!("budget {text:?} is zero bytes"),
        Some(bytes) => Ok(bytes),
        None => bail!("budget {text:?} is above the maximum of 64 GiB"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges_lists_and_units() {
        assert_eq!(
            parse_budgets("4KiB..32KiB").unwrap(),
            vec![4096, 8192, 16384, 32768]
        );
        assert_eq!(
            parse_budgets("4096,1MiB, 2m").unwrap(),
            vec![4096, 1 << 20, 2 << 20]
        );
        assert_eq!(parse_budgets("4KiB..4MiB").unwrap().len(), 11);
        for bad in ["", "x", "4XB", "0", "8KiB..4KiB", "100GiB", "-1"] {
            assert!(parse_budgets(bad).is_err(), "{bad:?}");
        }
    }
}

//! The simulator against hand-made histories: what survives, what may not, and replay.

use super::*;
use crate::file_io;

fn images(dir: &Path, guard: &PowerLossGuard, seeds: u64) -> Vec<BTreeMap<String, Vec<u8>>> {
    (0..seeds)
        .map(|seed| {
            let dest = dir.join(format!("image-{seed}"));
            guard.crash_image(seed, &dest).unwrap();
            let mut files = BTreeMap::new();
            for entry in fs::read_dir(&dest).unwrap() {
                let entry = entry.unwrap();
                let name = entry.file_name().to_string_lossy().into_owned();
                files.insert(name, fs::read(entry.path()).unwrap());
            }
            fs::remove_dir_all(&dest).unwrap();
            files
        })
        .collect()
}

#[test]
fn synced_bytes_always_survive_and_unsynced_ones_may_not() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("p");
    let guard = arm(&dir).unwrap();
    let path = dir.join("a.log");
    let file = file_io::create(&path).unwrap();
    file_io::sync_dir(&dir).unwrap();
    let synced = vec![1u8; 700];
    file_io::write_all_at(&file, &synced, 0, &path).unwrap();
    file_io::sync_data(&file, &path).unwrap();
    file_io::write_all_at(&file, &[2u8; 1500], 700, &path).unwrap();
    file_io::write_all_at(&file, &[3u8; 10], 2200, &path).unwrap();
    let all = images(root.path(), &guard, 256);
    let mut seen_lost = false;
    let mut seen_torn = false;
    let mut seen_reordered = false;
    for files in &all {
        let content = &files["a.log"];
        assert_eq!(&content[..700], &synced[..], "fsynced bytes survive");
        let second = content.get(700..2200).unwrap_or_default();
        let kept = second.iter().take_while(|&&b| b == 2).count() as u64;
        seen_lost |= kept == 0;
        seen_torn |= kept > 0 && kept < 1500;
        seen_reordered |= kept == 0 && content.get(2200..) == Some(&[3u8; 10][..]);
        // A torn write keeps a prefix ending at a sector boundary.
        assert!(
            kept == 0 || kept == 1500 || (700 + kept).is_multiple_of(SECTOR_BYTES),
            "{kept}"
        );
    }
    assert!(seen_lost && seen_torn && seen_reordered);
    assert_eq!(
        all,
        images(root.path(), &guard, 256),
        "images replay from seeds"
    );
}

#[test]
fn directory_changes_need_a_directory_fsync() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("p");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("old"), b"old").unwrap();
    let guard = arm(&dir).unwrap();
    let tmp = dir.join("new.tmp");
    let mut file = file_io::create(&tmp).unwrap();
    file_io::write_all(&mut file, b"new", &tmp).unwrap();
    file_io::sync_all(&file, &tmp).unwrap();
    file_io::rename(&tmp, &dir.join("old")).unwrap();
    let extra = dir.join("extra");
    drop(file_io::create(&extra).unwrap());
    let all = images(root.path(), &guard, 64);
    let outcomes: std::collections::BTreeSet<Vec<(String, Vec<u8>)>> =
        all.into_iter().map(|f| f.into_iter().collect()).collect();
    let old = ("old".to_string(), b"old".to_vec());
    let tmp_file = ("new.tmp".to_string(), b"new".to_vec());
    let renamed = ("old".to_string(), b"new".to_vec());
    let extra_file = ("extra".to_string(), Vec::new());
    // Creations and the rename survive in order, as a prefix.
    let allowed = [
        vec![old.clone()],
        vec![tmp_file.clone(), old.clone()],
        vec![renamed.clone()],
        vec![extra_file.clone(), renamed.clone()],
    ];
    for outcome in &outcomes {
        assert!(allowed.contains(outcome), "{outcome:?}");
    }
    assert_eq!(outcomes.len(), allowed.len());
    file_io::sync_dir(&dir).unwrap();
    for files in images(root.path(), &guard, 16) {
        assert_eq!(
            files.into_iter().collect::<Vec<_>>(),
            vec![extra_file.clone(), renamed.clone()]
        );
    }
}

#[test]
fn a_file_changed_behind_file_io_fails_the_image() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("p");
    let guard = arm(&dir).unwrap();
    fs::write(dir.join("sneaky.log"), b"x").unwrap();
    let error = guard
        .crash_image(1, &root.path().join("image"))
        .unwrap_err();
    assert!(error.to_string().contains("sneaky.log"), "{error}");
}

#[test]
fn a_scheduled_crash_is_taken_after_its_event() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("p");
    let guard = arm(&dir).unwrap();
    let dest = root.path().join("image");
    guard.crash_after_event(2, 7, &dest);
    let path = dir.join("a.log");
    let file = file_io::create(&path).unwrap();
    assert!(guard.take_crashed().is_none());
    file_io::write_all_at(&file, b"abc", 0, &path).unwrap();
    let image = guard.take_crashed().unwrap().unwrap();
    assert!(guard.take_crashed().is_none(), "handed out once");
    assert_eq!(image.after_events, 2);
    file_io::sync_dir(&dir).unwrap();
    assert_eq!(guard.events(), 3);
    assert!(guard.history(10).contains("#2 write a.log @0 +3"));
    assert_eq!(guard.find_event(0, "write a.log @0 +3"), Some(2));
    assert_eq!(guard.find_event(2, "write a.log @0 +3"), None);
}

#[test]
fn foreign_files_are_copied_as_they_are_when_allowed() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("p");
    let guard = arm_copying_foreign_files(&dir).unwrap();
    fs::write(dir.join("snapshot"), b"foreign").unwrap();
    let path = dir.join("a.log");
    drop(file_io::create(&path).unwrap());
    file_io::sync_dir(&dir).unwrap();
    let files = images(root.path(), &guard, 4);
    for image in files {
        assert_eq!(image["snapshot"], b"foreign");
        assert!(image.contains_key("a.log"));
    }
}

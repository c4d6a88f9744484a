/**
 * Packing a folder in the browser into the archive `coderunner deploy` sends: a gzipped tar of the
 * files the shared upload rules keep (node_modules and .git never; .gitignore and .coderunnerignore
 * honoured, folder by folder, as git applies them).
 */
import { ALWAYS_IGNORED, IGNORE_FILES, rebaseRules, uploadRules } from '@coderunner/api/client';
import { createTarGzip, type TarFileItem } from 'nanotar';

/** A file chosen in the page, with its path relative to the chosen folder ("src/app.js"). */
export interface PickedFile {
  path: string;
  file: File;
}

export interface Packed {
  archive: Blob;
  files: number;
  bytes: number;
}

interface Folder {
  files: Map<string, File>;
  folders: Map<string, Folder>;
}

const newFolder = (): Folder => ({ files: new Map(), folders: new Map() });

/** ustar stores names of at most 100 bytes (without the prefix field, which this writer leaves empty). */
const MAX_NAME_BYTES = 100;

/** The entries to upload, each folder before its contents, in a stable order (as the CLI lists them). */
export async function selectEntries(picked: PickedFile[]): Promise<{ path: string; file?: File }[]> {
  const root = newFolder();
  for (const { path, file } of picked) {
    const parts = path.split('/').filter(Boolean);
    const name = parts.pop();
    if (!name) continue;
    let dir = root;
    for (const part of parts) {
      let next = dir.folders.get(part);
      if (!next) {
        next = newFolder();
        dir.folders.set(part, next);
      }
      dir = next;
    }
    dir.files.set(name, file);
  }
  const rules = uploadRules();
  const entries: { path: string; file?: File }[] = [];
  const walk = async (dir: Folder, rel: string) => {
    for (const name of IGNORE_FILES) {
      const file = dir.files.get(name);
      if (file) rules.add(rebaseRules(await file.text(), rel));
    }
    const names = [...new Set([...dir.files.keys(), ...dir.folders.keys()])].sort();
    for (const name of names) {
      if (ALWAYS_IGNORED.includes(name)) continue;
      const childRel = rel ? `${rel}/${name}` : name;
      const sub = dir.folders.get(name);
      if (sub) {
        // A folder left out is not entered: nothing in it can be brought back (as in git).
        if (rules.ignores(`${childRel}/`)) continue;
        entries.push({ path: `${childRel}/` });
        await walk(sub, childRel);
      } else if (!rules.ignores(childRel)) {
        entries.push({ path: childRel, file: dir.files.get(name)! });
      }
    }
  };
  await walk(root, '');
  return entries;
}

export async function packFiles(picked: PickedFile[]): Promise<Packed> {
  const entries = await selectEntries(picked);
  const encoder = new TextEncoder();
  const items: TarFileItem[] = [];
  let bytes = 0;
  let files = 0;
  for (const entry of entries) {
    if (encoder.encode(entry.path).length > MAX_NAME_BYTES)
      throw new Error(
        `the path ${entry.path} is too long to pack in the browser; deploy this folder with the CLI`,
      );
    if (!entry.file) {
      items.push({ name: entry.path, attrs: { mode: '755', uid: 0, gid: 0 } });
      continue;
    }
    const data = new Uint8Array(await entry.file.arrayBuffer());
    bytes += data.length;
    files++;
    items.push({
      name: entry.path,
      data,
      attrs: { mode: '644', uid: 0, gid: 0, mtime: entry.file.lastModified },
    });
  }
  const gz = await createTarGzip(items);
  return { archive: new Blob([gz as BlobPart], { type: 'application/gzip' }), files, bytes };
}

/** Files from `<input type=file webkitdirectory>`: their paths start with the chosen folder's name. */
export function fromDirectoryInput(list: FileList): PickedFile[] {
  return [...list].map((file) => ({ path: file.webkitRelativePath.split('/').slice(1).join('/'), file }));
}

/** Files of a folder dropped on the page (walked through the File System Entries API). */
export async function fromDrop(items: DataTransferItemList): Promise<PickedFile[] | File> {
  const entries = [...items].map((i) => i.webkitGetAsEntry()).filter((e) => e !== null);
  const only = entries[0];
  if (entries.length === 1 && only?.isFile) {
    return new Promise((resolve, reject) => (only as FileSystemFileEntry).file(resolve, reject));
  }
  const out: PickedFile[] = [];
  const visit = async (entry: FileSystemEntry, rel: string): Promise<void> => {
    if (entry.isFile) {
      const file = await new Promise<File>((resolve, reject) =>
        (entry as FileSystemFileEntry).file(resolve, reject),
      );
      out.push({ path: rel, file });
    } else if (entry.isDirectory) {
      if (ALWAYS_IGNORED.includes(entry.name)) return; // never read node_modules just to drop it
      const reader = (entry as FileSystemDirectoryEntry).createReader();
      for (;;) {
        const batch = await new Promise<FileSystemEntry[]>((resolve, reject) =>
          reader.readEntries(resolve, reject),
        );
        if (!batch.length) break;
        for (const child of batch) await visit(child, rel ? `${rel}/${child.name}` : child.name);
      }
    }
  };
  // One dropped folder is the app's folder; several items are its contents.
  if (entries.length === 1 && only?.isDirectory) await visit(only, '');
  else for (const e of entries) await visit(e, e.name);
  return out;
}

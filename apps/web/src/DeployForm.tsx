import { RUNTIME_TYPES } from '@coderunner/api/client';
import { useQueryClient } from '@tanstack/react-query';
import { type DragEvent, type FormEvent, useId, useState } from 'react';
import { useTRPC } from './api';
import { fromDirectoryInput, fromDrop, type PickedFile, packFiles } from './pack';
import { navigate } from './router';
import { ErrorMessage } from './ui';
import { uploadDeployment } from './upload';

type Source = { kind: 'folder'; name: string; files: PickedFile[] } | { kind: 'archive'; file: File };

const isArchive = (f: File) => /\.(tar\.gz|tgz)$/i.test(f.name);

/** Deploy from the browser: a folder (packed here like the CLI packs it) or a ready .tar.gz. */
export function DeployForm({ projectId }: { projectId: string }) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const id = useId();
  const [source, setSource] = useState<Source | null>(null);
  const [runtime, setRuntime] = useState('');
  const [database, setDatabase] = useState(false);
  const [phase, setPhase] = useState<'idle' | 'packing' | 'uploading'>('idle');
  const [progress, setProgress] = useState(0);
  const [error, setError] = useState<unknown>(null);
  const [dragging, setDragging] = useState(false);

  const choose = (s: Source | null) => {
    setSource(s);
    setError(null);
  };

  const onDrop = async (e: DragEvent) => {
    e.preventDefault();
    setDragging(false);
    try {
      const dropped = await fromDrop(e.dataTransfer.items);
      if (dropped instanceof File) {
        if (!isArchive(dropped)) throw new Error('drop a folder or a .tar.gz archive');
        choose({ kind: 'archive', file: dropped });
      } else {
        choose({ kind: 'folder', name: 'dropped folder', files: dropped });
      }
    } catch (err) {
      setError(err);
    }
  };

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (!source) return setError(new Error('choose a folder or a .tar.gz archive first'));
    setError(null);
    try {
      setPhase('packing');
      const archive = source.kind === 'archive' ? source.file : (await packFiles(source.files)).archive;
      setPhase('uploading');
      setProgress(0);
      const deployment = await uploadDeployment({
        projectId,
        archive,
        ...(runtime ? { runtime } : {}),
        database,
        onProgress: (sent, total) => setProgress(total ? sent / total : 0),
      });
      await queryClient.invalidateQueries({ queryKey: trpc.deployments.list.pathKey() });
      navigate(`/deployments/${deployment.id}`);
    } catch (err) {
      setError(err);
    } finally {
      setPhase('idle');
    }
  };

  const busy = phase !== 'idle';
  return (
    <form
      onSubmit={submit}
      className={`card drop${dragging ? ' dragging' : ''}`}
      aria-labelledby={`${id}-title`}
      onDragOver={(e) => {
        e.preventDefault();
        setDragging(true);
      }}
      onDragLeave={() => setDragging(false)}
      onDrop={onDrop}
    >
      <h2 id={`${id}-title`}>Deploy</h2>
      <p className="hint">
        Choose your app's folder (or drop it here). node_modules, .git and whatever .gitignore or
        .coderunnerignore leave out are not uploaded.
      </p>
      <div className="pickers">
        <label htmlFor={`${id}-folder`}>Folder</label>
        <input
          id={`${id}-folder`}
          type="file"
          webkitdirectory=""
          multiple
          disabled={busy}
          onChange={(e) => {
            const list = e.target.files;
            if (list?.length) {
              const name = list[0]!.webkitRelativePath.split('/')[0] ?? 'folder';
              choose({ kind: 'folder', name, files: fromDirectoryInput(list) });
            }
          }}
        />
        <label htmlFor={`${id}-archive`}>or a .tar.gz archive</label>
        <input
          id={`${id}-archive`}
          type="file"
          accept=".tar.gz,.tgz,application/gzip"
          disabled={busy}
          onChange={(e) => {
            const file = e.target.files?.[0];
            if (file) choose({ kind: 'archive', file });
          }}
        />
      </div>
      <p aria-live="polite">
        {source?.kind === 'folder' &&
          `Selected folder ${source.name} (${source.files.length} files before ignore rules).`}
        {source?.kind === 'archive' && `Selected archive ${source.file.name}.`}
      </p>
      <label htmlFor={`${id}-runtime`}>Runtime</label>
      <select
        id={`${id}-runtime`}
        value={runtime}
        onChange={(e) => setRuntime(e.target.value)}
        disabled={busy}
      >
        <option value="">Detect from the files</option>
        {RUNTIME_TYPES.map((r) => (
          <option key={r} value={r}>
            {r}
          </option>
        ))}
      </select>
      <div className="check">
        <input
          id={`${id}-database`}
          type="checkbox"
          checked={database}
          onChange={(e) => setDatabase(e.target.checked)}
          disabled={busy}
        />
        <label htmlFor={`${id}-database`}>With a PostgreSQL database</label>
      </div>
      {phase === 'uploading' && (
        <div>
          <label htmlFor={`${id}-progress`}>Uploading</label>
          <progress id={`${id}-progress`} max={1} value={progress}>
            {Math.round(progress * 100)}%
          </progress>
        </div>
      )}
      <ErrorMessage error={error} />
      <button type="submit" className="primary" disabled={busy}>
        {phase === 'packing'
          ? 'Packing…'
          : phase === 'uploading'
            ? `Uploading ${Math.round(progress * 100)}%…`
            : 'Deploy'}
      </button>
    </form>
  );
}

/** Where the server streams a database backup's archive (shared by the server's route and its clients). */
export const BACKUP_DOWNLOAD_PREFIX = '/downloads/database-backups/';

/** The download's path for a backup, below the server's address. */
export function backupDownloadPath(projectId: string, backupId: string): string {
  return `${BACKUP_DOWNLOAD_PREFIX}${encodeURIComponent(projectId)}/${encodeURIComponent(backupId)}`;
}

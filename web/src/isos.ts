import { isoUploadName } from './iso-name.js';
import { sendFile } from './upload.js';

/** An installer ISO uploaded to the daemon (GET /v1/isos), with the OS identified from it. */
export interface IsoFile {
  name: string;
  path: string;
  size: number;
  os?: { shortId: string; name: string };
  problem?: string;
}

/** The content type the daemon takes an ISO upload with. */
const ISO_TYPE = 'application/x-iso9660-image';

/** PUT /v1/isos/NAME with the file as the body. */
export const uploadIso = (file: File, onProgress: (percent: number) => void): Promise<IsoFile> =>
  sendFile(
    'PUT',
    `/v1/isos/${encodeURIComponent(isoUploadName(file.name))}`,
    file,
    { 'content-type': ISO_TYPE },
    onProgress,
  );
